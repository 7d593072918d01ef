"""One model's evaluation: scores, per-class table, confusion, calibration, AUs.

:func:`evaluate_model` takes what a run's prediction files hold (OOF rows with their fold,
holdout rows averaged over fold models) and returns one JSON-ready section of the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferray.report._calibration import calibration_summary
from ferray.report._metrics import classification_summary, confusion, fold_spread, most_confused, per_au_f1

__all__ = ["Split", "evaluate_model"]


class Split:
    """Labels and probabilities of one set of rows (``oof``, ``holdout`` or a dataset)."""

    def __init__(
        self,
        name: str,
        rows: np.ndarray,
        labels: np.ndarray,
        probs: np.ndarray,
        folds: np.ndarray | None = None,
        au_probs: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.probs = np.asarray(probs, dtype=np.float64)
        self.folds = None if folds is None else np.asarray(folds)
        self.au_probs = None if au_probs is None else np.asarray(au_probs, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.labels)


def evaluate_model(
    label: str,
    kind: str,
    class_names: Sequence[str],
    *,
    oof: Split | None = None,
    holdout: Split | None = None,
    au_labels: np.ndarray | None = None,
    au_ids: Sequence[int] | None = None,
    top_confused: int = 5,
    extra: dict | None = None,
) -> dict:
    """The report section of one model.

    The *evaluation split* (confusion, most confused pairs, calibration) is the holdout
    when it has rows, else the OOF rows. The temperature is fitted on the OOF rows and
    judged on the holdout; without a holdout it is fitted and judged on the OOF rows (and
    the section says so).

    Args:
        label: how the page names the model (``"best trial 3f2a_00001"``).
        kind: ``trial``, ``ensemble``, ``student`` or ``bundle``.
        class_names: the model's classes, in column order.
        oof, holdout: the model's predictions (either may be None).
        au_labels: the dataset's AU multi-hot ``(N_data, 18)``, indexed by the splits' ``rows``.
        au_ids: the AU numbers of its columns (``ferray.data.AU_IDS``).
    """
    names = list(class_names)
    out: dict = {"label": label, "kind": kind, **(extra or {})}
    splits = [s for s in (oof, holdout) if s is not None and len(s)]
    for s in splits:
        out[s.name] = classification_summary(s.labels, s.probs, names)
    if oof is not None and len(oof) and oof.folds is not None and len(np.unique(oof.folds[oof.folds >= 0])) > 1:
        out["fold_spread"] = fold_spread(oof.labels, oof.probs, oof.folds, names)
    if not splits:
        out["evaluated_on"] = None
        return out
    ev = holdout if holdout is not None and len(holdout) else oof
    out["evaluated_on"] = ev.name
    cm = confusion(ev.labels, ev.probs, len(names))
    out["confusion"] = cm
    out["most_confused"] = most_confused(cm["counts"], names, top_confused)
    fit = oof if oof is not None and len(oof) else None
    cal = calibration_summary(
        fit.labels if fit is not None else None,
        fit.probs if fit is not None else None,
        ev.labels,
        ev.probs,
        fitted_on=fit.name if fit is not None else "oof",
        evaluated_on=ev.name,
    )
    if fit is ev:
        cal["note"] = "no holdout rows: the temperature was fitted and judged on the same OOF rows"
    elif fit is None:
        cal["note"] = "no out-of-fold predictions to fit a temperature on"
    out["calibration"] = cal
    if au_labels is not None and au_ids is not None:
        au = {}
        for s in splits:
            if s.au_probs is not None:
                au[s.name] = per_au_f1(au_labels[s.rows], s.au_probs, au_ids)
        if au:
            out["au"] = au
    return out
