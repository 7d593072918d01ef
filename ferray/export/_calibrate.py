"""The temperature a bundle stores for each graph, fitted on rows its models never trained on.

``ferray predict`` applies ``softmax(log p / T)`` to a graph's probabilities (see
:mod:`ferray.metrics.calibration`). ``T`` is fitted by negative log-likelihood on the
ensemble's out-of-fold predictions (``RUN/ensemble/oof.parquet``: every row predicted by the
fold models that did not train on it), and its effect is measured there and, when the run
has one, on the holdout (rows that did not choose ``T``). A graph without such rows keeps
``T = 1``, and the manifest says why: the distilled student trained on every
cross-validation row, and its only unseen rows, the holdout, are kept for judging it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ferray.errors import ConfigError, DataError
from ferray.metrics import log_loss
from ferray.metrics.calibration import (
    N_BINS,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    is_temperature,
)
from ferray.run.layout import DistillLayout, EnsembleLayout
from ferray.run.predictions import read_predictions

__all__ = [
    "fit_calibration",
    "no_calibration",
    "ensemble_calibration",
    "student_calibration",
    "check_calibration",
    "GRAPHS",
]

#: Graphs a bundle can hold, and so the keys of the manifest's ``calibration`` section.
GRAPHS = ("ensemble", "student")

_STUDENT_REASON = (
    "the student trained on every cross-validation row; its only unseen rows are the holdout, "
    "kept for judging it, so no temperature was fitted (T = 1)"
)


def _scores(y: np.ndarray, proba: np.ndarray, temperature: float, n_bins: int) -> dict:
    scaled = apply_temperature(proba, temperature)
    return {
        "rows": len(y),
        "ece_before": expected_calibration_error(y, proba, n_bins),
        "ece_after": expected_calibration_error(y, scaled, n_bins),
        "log_loss_before": round(log_loss(y, proba), 6),
        "log_loss_after": round(log_loss(y, scaled), 6),
    }


def _check_rows(labels, probs, what: str, n_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or y.ndim != 1 or len(y) != len(p):
        raise DataError(f"{what}: labels {y.shape} and probabilities {p.shape} do not match (want (n,) and (n, C))")
    if n_classes is not None and p.shape[1] != n_classes:
        raise DataError(f"{what}: probabilities of {p.shape[1]} classes, but the bundle has {n_classes}")
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]):
        raise DataError(f"{what}: labels must be class indexes in [0, {p.shape[1] - 1}]")
    if not np.isfinite(p).all() or (p < 0).any():
        raise DataError(f"{what}: probabilities must be finite and >= 0")
    return y.astype(np.int64), p


def fit_calibration(
    labels: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    *,
    fitted_on: str = "out-of-fold",
    source: str | None = None,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    n_classes: int | None = None,
    n_bins: int = N_BINS,
    **facts,
) -> dict:
    """A manifest ``calibration`` entry: ``T`` fitted on ``(labels, probs)`` and what it does.

    Args:
        labels: true class indexes of rows the graph's models did not train on.
        probs: the graph's probabilities for them ``(n, C)``.
        fitted_on: what the rows are (``"out-of-fold"``).
        source: where they came from (a file), recorded as ``file``.
        holdout: ``(labels, probs)`` of other unseen rows on which ``T`` is judged.
        n_classes: the bundle's class count, checked against ``probs``.
        n_bins: ECE bins.
        facts: more JSON-able facts stored in the entry (``tta``, ...).

    Returns:
        ``{"temperature", "fitted_on", "rows", "ece_before", "ece_after", "log_loss_before",
        "log_loss_after", "n_bins", ["file"], ["holdout": {rows, ece_before, ...}], **facts}``.

    Raises:
        DataError: labels and probabilities that do not fit together, or no rows.

    >>> import numpy as np
    >>> entry = fit_calibration([0, 1, 1, 0], np.array([[.99, .01], [.02, .98], [.97, .03], [.6, .4]]))
    >>> entry["temperature"] > 1, entry["rows"]
    (True, 4)
    """
    what = source or "calibration rows"
    y, p = _check_rows(labels, probs, what, n_classes)
    if not len(y):
        raise DataError(f"{what}: no rows to fit a temperature on")
    t = fit_temperature(y, p)
    entry: dict = {"temperature": round(t, 6), "fitted_on": fitted_on, **_scores(y, p, t, n_bins), "n_bins": n_bins}
    if source is not None:
        entry["file"] = source
    if holdout is not None:
        hy, hp = _check_rows(*holdout, f"{what} (holdout)", n_classes)
        if len(hy):
            entry["holdout"] = _scores(hy, hp, t, n_bins)
    entry.update(facts)
    return entry


def no_calibration(reason: str) -> dict:
    """A manifest ``calibration`` entry for a graph that keeps ``T = 1``, with the reason."""
    return {"temperature": 1.0, "fitted_on": None, "reason": reason}


def check_calibration(calibration: Mapping[str, dict] | None, graphs: Sequence[str]) -> dict:
    """The manifest's ``calibration`` section: an entry per graph (T = 1 with a reason where none is given).

    Raises:
        ConfigError: an entry for an unknown graph or for one not in ``graphs`` (not exported), or a
            temperature that is not a finite number > 0.
    """
    given = dict(calibration or {})
    unknown = sorted(set(given) - set(GRAPHS))
    if unknown:
        raise ConfigError(f"calibration: unknown graph(s) {unknown}; valid keys: {', '.join(GRAPHS)}")
    for g in given:
        if g not in graphs:
            raise ConfigError(f"calibration has a {g!r} entry, but no {g} is exported")
    out: dict = {"method": "temperature", "applies": "softmax(log p / T) to the graph's probs"}
    for g in graphs:
        entry = given.get(g)
        if entry is None:
            entry = no_calibration(
                "no out-of-fold predictions were given to fit a temperature on (T = 1)"
                if g == "ensemble"
                else _STUDENT_REASON
            )
        if not isinstance(entry, Mapping):
            raise ConfigError(f"calibration.{g} is {entry!r}, but must be a dict (see fit_calibration)")
        t = entry.get("temperature")
        if not is_temperature(t):
            raise ConfigError(f"calibration.{g}.temperature is {t!r}, but must be a finite number > 0")
        out[g] = dict(entry)
    return out


def _read(path: Path):
    """The predictions file, or None when there is none (an unreadable one raises DataError naming it)."""

    return read_predictions(path) if path.is_file() else None


def ensemble_calibration(
    folder: str | os.PathLike | EnsembleLayout, *, method: str, members: Sequence[str], classes: Sequence[str]
) -> dict:
    """The ensemble's entry from a run's ``ensemble/`` folder (``ferray ensemble``'s ``oof.parquet``).

    ``T`` is fitted on the chosen ensemble's out-of-fold rows and judged on its holdout rows.
    When the folder has no out-of-fold file, or it belongs to another ensemble (method,
    members) or other classes than the exported one, ``T = 1`` and the entry says why.

    Raises:
        DataError: an unreadable predictions file.
    """
    layout = folder if isinstance(folder, EnsembleLayout) else EnsembleLayout(Path(folder))
    oof = _read(layout.oof)
    if oof is None:
        return no_calibration(
            f"{layout.oof}: no out-of-fold predictions of the ensemble (T = 1); `ferray ensemble RUN` writes them"
        )
    meta = oof.meta
    if meta.get("ensemble") not in (None, method):
        return no_calibration(
            f"{layout.oof}: predictions of ensemble {meta.get('ensemble')!r}, but the bundle exports {method!r} (T = 1)"
        )
    if meta.get("members") is not None and list(meta["members"]) != list(members):
        return no_calibration(
            f"{layout.oof}: predictions of members {meta['members']}, but the bundle exports {list(members)} (T = 1)"
        )
    if list(meta.get("class_names") or []) != list(classes):
        return no_calibration(
            f"{layout.oof}: classes {meta.get('class_names')}, but the bundle's are {list(classes)} (T = 1)"
        )
    hold = _read(layout.holdout)
    holdout = None
    if hold is not None and len(hold):
        means = hold.row_means()  # a holdout file holds each row once per fold model: their mean per row
        holdout = (means.labels, means.probs)
    return fit_calibration(
        oof.labels,
        oof.probs,
        fitted_on="out-of-fold",
        source=str(layout.oof),
        holdout=holdout,
        n_classes=len(classes),
        tta=list(meta.get("tta") or []),
    )


def student_calibration(folder: str | os.PathLike | DistillLayout, *, classes: Sequence[str]) -> dict:
    """The student's entry: ``T`` from its own out-of-fold rows (``distill/oof.parquet``) if it has
    any, else ``T = 1`` with the reason (``ferray distill`` trains the student on every
    cross-validation row, so it has none).

    Raises:
        DataError: an unreadable predictions file.
    """
    layout = folder if isinstance(folder, DistillLayout) else DistillLayout(Path(folder))
    oof = _read(layout.oof)
    if oof is None:
        return no_calibration(_STUDENT_REASON)
    if list(oof.meta.get("class_names") or []) != list(classes):
        return no_calibration(
            f"{layout.oof}: classes {oof.meta.get('class_names')}, but the bundle's are {list(classes)} (T = 1)"
        )
    return fit_calibration(
        oof.labels,
        oof.probs,
        fitted_on="out-of-fold",
        source=str(layout.oof),
        n_classes=len(classes),
        tta=list(oof.meta.get("tta") or []),
    )
