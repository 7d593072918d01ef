"""Caruana et al.'s ensemble selection (2004), with replacement, as AutoGluon's ``EnsembleSelection``.

Each round adds the member that most improves the metric of the running average; a member
may be added again (that is how weights other than 1/n arise). The best prefix of the
rounds is kept, so more rounds never make the ensemble worse on the rows it was fitted on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferray.ensemble._base import EPS, EnsembleMethod, check_setting
from ferray.ensemble._registry import register_ensemble

__all__ = ["GreedyEnsemble"]

METRICS = ("log_loss", "accuracy")

# Scores this close to the round's best count as a tie: averages of the same members in a
# different order differ in the last bits.
_TIE_RTOL = 1e-12


@register_ensemble("greedy")
class GreedyEnsemble(EnsembleMethod):
    """Greedy ensemble selection with replacement; the weights are how often each member was picked.

    Round ``s`` (1-based) scores, for every member ``m``, the running average with ``m``
    added: ``(sum of the s-1 picked members' probabilities + P[m]) / s``, and picks the
    best. Ties go to a member already picked (fewer distinct members, same score), then to a
    draw from ``numpy.random.default_rng(seed)``. After ``iterations`` rounds the prefix
    with the best score is kept (the shortest one on a tie).

    Args:
        iterations: rounds of selection (ensemble size before the prefix is cut), >= 1.
        seed: seeds the tie-breaking draws; same seed and data, same weights.
        metric: ``"log_loss"`` (lower is better) or ``"accuracy"`` (higher is better).
        bags: with more than 1, bagged selection (Caruana et al. 2004): each bag selects from
            a random ``bag_fraction`` of the members, and the weights are the mean of the
            bags' weights, which guards against a selection fitted to the rows' noise.
        bag_fraction: the share of the members each bag selects from, in (0, 1].
        member_costs: each member's cost (e.g. its batch-1 latency in ms), aligned with the
            members of ``P``; read only with ``max_cost``.
        max_cost: the most the distinct picked members may cost together (``None``: no
            budget). A round only considers the members already picked (a re-pick costs
            nothing: the member runs once) and those whose cost fits what is left. With bags,
            the bags share the budget: a member an earlier bag picked is paid for.

    The members are whatever ``P`` holds: :func:`~ferray.ensemble.build_ensembles` passes the
    trials of ``ensemble.greedy.pool`` (every completed trial whose weights are on disk, by
    default), so a weaker trial that corrects the others' mistakes can be picked although it
    ranks outside the ``top_k`` the other methods combine.

    Attributes:
        weights_: ``(n_members,)`` pick counts of the kept prefix divided by its length (sum 1).
        indices_: the member picked in each round of the kept prefix.
        trajectory_: the metric after each of the ``iterations`` rounds (in the metric's own
            units: log-loss or accuracy), of which the first ``len(indices_)`` are kept.
        score_: the metric of the kept prefix on the rows it was fitted on (optimistic).
        bag_members_: ``(bags, members per bag)`` the members each bag selected from
            (``None`` without bagging; then ``indices_`` holds every bag's picks and
            ``trajectory_`` the bagged ensemble's metric alone).

    ``predict_proba(P)`` is ``sum_m weights_[m] * P[m]``.

    >>> import numpy as np
    >>> P = np.array([[[0.9, 0.1], [0.6, 0.4]],    # member 0: sure of row 0, wrong on row 1
    ...               [[0.4, 0.6], [0.1, 0.9]]])   # member 1: the other way round
    >>> GreedyEnsemble(iterations=4).fit(P, [0, 1]).weights_
    array([0.5, 0.5])
    """

    def __init__(
        self,
        iterations: int = 25,
        seed: int = 0,
        metric: str = "log_loss",
        bags: int = 1,
        bag_fraction: float = 0.5,
        member_costs: Any = None,
        max_cost: float | None = None,
    ):
        self.iterations = iterations
        self.seed = seed
        self.metric = metric
        self.bags = bags
        self.bag_fraction = bag_fraction
        self.member_costs = member_costs
        self.max_cost = max_cost

    def fit(self, P: Any, y: Any) -> GreedyEnsemble:
        """Select members on ``P`` (OOF probabilities ``(n_members, n_rows, n_classes)``) and ``y``."""
        iterations = check_setting("iterations", self.iterations, low=1, integer=True)
        metric = check_setting("metric", self.metric, choices=METRICS)
        check_setting("seed", self.seed, low=0, integer=True)
        bags = check_setting("bags", self.bags, low=1, integer=True)
        fraction = check_setting("bag_fraction", self.bag_fraction, low=0.0, strict_low=True)
        if fraction > 1:
            raise ValueError(f"The value of bag_fraction is {fraction}, but must be bag_fraction <= 1")
        P, y = self._check_fit_input(P, y)
        rng = np.random.default_rng(self.seed)
        n_members, n_rows, _ = P.shape
        costs = self._costs(n_members)
        rows = np.arange(n_rows)
        # log-loss needs each row's true-class probability only; accuracy needs the argmax.
        P_use = P[:, rows, y] if metric == "log_loss" else P
        if bags == 1:
            left = np.inf if costs is None else float(self.max_cost)
            picks, losses, keep = _select(P_use, y, int(iterations), metric, rng, costs, left)
            self.indices_ = np.asarray(picks[:keep], dtype=np.int64)
            self.weights_ = np.bincount(self.indices_, minlength=n_members) / keep
            self.trajectory_ = np.asarray(losses if metric == "log_loss" else [1.0 - v for v in losses])
            self.score_ = float(self.trajectory_[keep - 1])
            self.bag_members_ = None
            return self
        # Bagged selection (Caruana et al. 2004, section 4): each bag selects from a random
        # share of the members; the ensemble is the mean of the bags' ensembles. A member that
        # won one selection by the rows' noise seldom wins every bag it is in.
        # With a budget the bags share it: a member an earlier bag picked is paid for, so the
        # union of the bags' members (what the ensemble runs) fits max_cost.
        size = max(1, int(round(fraction * n_members)))
        weights = np.zeros(n_members)
        paid = np.zeros(n_members, dtype=bool)
        picked_all, members, filled = [], [], 0
        for _ in range(int(bags)):
            subset = np.sort(rng.choice(n_members, size=size, replace=False))
            members.append(subset)
            if costs is None:
                picks, _, keep = _select(P_use[subset], y, int(iterations), metric, rng)
            else:
                left = float(self.max_cost) - float(costs[paid].sum())
                picks, _, keep = _select(
                    P_use[subset], y, int(iterations), metric, rng, costs[subset], left, paid[subset]
                )
            if not keep:  # every member of this bag is over what is left of the budget
                continue
            chosen = subset[np.asarray(picks[:keep], dtype=np.int64)]
            paid[chosen] = True
            weights += np.bincount(chosen, minlength=n_members) / keep
            picked_all.extend(chosen.tolist())
            filled += 1
        if not filled:
            raise ValueError(
                f"no bag held a member within max_cost {self.max_cost:g}; raise bag_fraction or the budget"
            )
        self.weights_ = weights / filled
        self.indices_ = np.asarray(picked_all, dtype=np.int64)
        self.bag_members_ = np.stack(members)
        score = _loss(np.tensordot(self.weights_, P_use, axes=1), y, metric)
        self.trajectory_ = np.asarray([score if metric == "log_loss" else 1.0 - score])
        self.score_ = float(self.trajectory_[0])
        return self

    def _costs(self, n_members: int) -> np.ndarray | None:
        """The checked ``member_costs`` (``None`` without a ``max_cost``)."""
        if self.max_cost is None:
            return None
        check_setting("max_cost", self.max_cost, low=0.0, strict_low=True)
        if self.member_costs is None:
            raise ValueError("max_cost is set, but member_costs is None; give each member's cost")
        costs = np.asarray(self.member_costs, dtype=np.float64).reshape(-1)
        if len(costs) != n_members:
            raise ValueError(f"member_costs has {len(costs)} values, but P has {n_members} members")
        if not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise ValueError(f"member_costs must be finite and >= 0, got {costs.tolist()}")
        if not np.any(costs <= self.max_cost):
            raise ValueError(
                f"no member fits max_cost {self.max_cost:g} (the cheapest costs {costs.min():g}); "
                "raise the budget or add cheaper members"
            )
        return costs

    def _combine(self, P: np.ndarray) -> np.ndarray:
        return np.tensordot(self.weights_, P, axes=1)

    def _learned(self) -> dict:
        return {
            "weights": self.weights_.tolist(),
            "indices": self.indices_.tolist(),
            "trajectory": self.trajectory_.tolist(),
            "fit_score": self.score_,
            "bag_members": None if getattr(self, "bag_members_", None) is None else self.bag_members_.tolist(),
            "formula": "sum_m weights[m] * p_m",
        }

    def _named(self, learned: dict, names: list[str], used: np.ndarray) -> dict:
        # By name, the picks and the bags need no positions into a pool the reader never sees.
        learned = super()._named(learned, names, used)
        learned["indices"] = [names[i] for i in self.indices_]
        if self.bag_members_ is not None:
            learned["bag_members"] = [[names[i] for i in bag] for bag in self.bag_members_]
        return learned


def _loss(average: np.ndarray, y: np.ndarray, metric: str) -> float:
    """The selection metric of one averaged prediction (as a loss: lower is better)."""
    if metric == "log_loss":
        return float(-np.log(np.clip(average, EPS, 1.0)).mean())
    return float(1.0 - (average.argmax(axis=1) == y).mean())


def _select(
    P_use: np.ndarray,
    y: np.ndarray,
    iterations: int,
    metric: str,
    rng: np.random.Generator,
    costs: np.ndarray | None = None,
    left: float = np.inf,
    paid: np.ndarray | None = None,
) -> tuple[list[int], list[float], int]:
    """One greedy selection with replacement: ``(picks, loss after each round, kept prefix length)``.

    With ``costs``, a round considers only the members already picked or ``paid`` for (they
    run once however often they are picked) and those whose cost fits in what is ``left`` of
    the budget. When no member is allowed in the first round, nothing is picked (``keep`` 0).
    """
    n_members = P_use.shape[0]
    running = np.zeros(P_use.shape[1:])
    counts = np.zeros(n_members, dtype=np.int64)
    free = np.zeros(n_members, dtype=bool) if paid is None else paid.copy()
    picks: list[int] = []
    losses: list[float] = []
    for size in range(1, iterations + 1):
        candidates = (running[None] + P_use) / size
        if metric == "log_loss":
            loss = -np.log(np.clip(candidates, EPS, 1.0)).mean(axis=1)
        else:
            loss = 1.0 - (candidates.argmax(axis=2) == y[None]).mean(axis=1)
        if costs is not None:
            allowed = free | (costs <= left)
            if not allowed.any():
                return [], [], 0
            loss = np.where(allowed, loss, np.inf)
        best = loss.min()
        tied = np.flatnonzero(loss <= best + _TIE_RTOL * max(1.0, abs(best)))
        if len(tied) > 1 and counts[tied].any():
            tied = tied[counts[tied] > 0]
        pick = int(tied[0]) if len(tied) == 1 else int(rng.choice(tied))
        running = running + P_use[pick]
        if costs is not None and not free[pick]:
            left -= float(costs[pick])
            free[pick] = True
        counts[pick] += 1
        picks.append(pick)
        losses.append(float(loss[pick]))
    keep = int(np.argmin(losses)) + 1  # first minimum: the shortest best prefix
    return picks, losses, keep
