"""Majority vote of the members' predicted classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferray.ensemble._base import EnsembleMethod
from ferray.ensemble._registry import register_ensemble

__all__ = ["VoteEnsemble", "VOTE_NUDGE"]

#: Small enough never to overturn a vote (shares differ by >= 1/n_members, and members are
#: fewer than 1000), large enough that a tied vote is still decided once the probabilities are
#: stored as float32 (prediction files, the exported graph) unless the means differ by < 1e-4.
VOTE_NUDGE = 1e-3


@register_ensemble("vote")
class VoteEnsemble(EnsembleMethod):
    """Each member votes for its argmax class; the probabilities are the vote shares.

    Ties are deterministic: a member's own argmax tie goes to the lower class index, and a
    tied vote goes to the class with the higher mean member probability (then the lower
    index). So that the argmax of :meth:`predict_proba` is that winner, the shares are
    nudged by ``1e-3`` times the mean member probability and renormalised::

        predict_proba(P) = (votes / n_members + 1e-3 * mean_m P[m]) / row sum

    ``fit`` learns nothing from the labels.
    """

    learns_from_labels = False

    def __init__(self) -> None:
        pass

    def fit(self, P: Any, y: Any) -> VoteEnsemble:
        self._check_fit_input(P, y)
        return self

    def _combine(self, P: np.ndarray) -> np.ndarray:
        n_members, n_rows, n_classes = P.shape
        votes = np.zeros((n_rows, n_classes))
        winners = P.argmax(axis=2)  # (n_members, n_rows)
        for m in range(n_members):
            votes[np.arange(n_rows), winners[m]] += 1.0
        proba = votes / n_members + VOTE_NUDGE * P.mean(axis=0)
        return proba / proba.sum(axis=1, keepdims=True)

    def _learned(self) -> dict:
        return {"formula": "vote shares of argmax_c p_m, ties to the higher mean probability"}
