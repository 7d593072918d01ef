"""Seeded bootstrap percentile intervals of accuracy and macro-F1, alone or as a paired gain.

The rows are resampled with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``),
every resample scores both metrics at once, and an interval is the ``(1 - level) / 2`` and
``(1 + level) / 2`` quantiles of the resampled values. The paired version scores two models on
the same resamples, so its interval of ``metric(a) - metric(b)`` reflects the rows on which
they differ.

>>> import numpy as np
>>> y = np.array([0, 1] * 50)
>>> ci = bootstrap_metrics(y, np.array([0, 1] * 45 + [1, 0] * 5), seed=0)
>>> round(ci["accuracy"].value, 2), ci["accuracy"].low < 0.9 < ci["accuracy"].high
(0.9, True)
>>> paired_bootstrap(y, y, y, n_boot=10)
Interval(value=0.0, low=0.0, high=0.0)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ferray.metrics.classification import _labels, to_labels

__all__ = [
    "Interval",
    "BOOTSTRAP_METRICS",
    "bootstrap_metrics",
    "bootstrap_ci",
    "paired_bootstrap_metrics",
    "paired_bootstrap",
]


class Interval(NamedTuple):
    """A metric on the full sample and its bootstrap percentile interval."""

    value: float
    low: float
    high: float


#: The metrics every bootstrap scores (keys of :func:`bootstrap_metrics`'s result).
BOOTSTRAP_METRICS = ("accuracy", "macro_f1")
# Bootstrap weights are drawn in blocks of at most this many cells (resamples x rows).
_BLOCK_CELLS = 4_000_000


def _check_boot(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot is {n_boot!r}, but must be an integer >= 1 (1000 or more for a 95% interval)")
    if not 0 < level < 1:
        raise ValueError(f"level is {level!r}, but must lie in (0, 1), e.g. 0.95")


def _check_metric(metric: str) -> None:
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric is {metric!r}, but must be one of {list(BOOTSTRAP_METRICS)}")


def _weights(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of ``(b, n)`` resampling counts (each row one bootstrap sample of the ``n`` rows)."""
    per_block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_boot, per_block):
        b = min(per_block, n_boot - start)
        idx = rng.integers(0, n, (b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.reshape(-1), minlength=b * n).reshape(b, n).astype(np.float64)


def _scores(w: np.ndarray, y_true: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 (over ``labels``) of each weighted sample (rows of ``w``).

    With unit weights these are :func:`~ferray.metrics.accuracy` and
    :func:`~ferray.metrics.macro_f1` over ``labels``; the weighted counts score every resample
    of a block in one matrix product.
    """
    n = w.shape[1]
    truth = y_true[:, None] == labels[None, :]
    said = pred[:, None] == labels[None, :]
    tp = w @ (truth & said).astype(np.float64)
    denom = w @ truth.astype(np.float64) + w @ said.astype(np.float64)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"accuracy": w @ (pred == y_true).astype(np.float64) / n, "macro_f1": f1.mean(axis=1)}


def _interval(value: float, samples: np.ndarray, level: float) -> Interval:
    low, high = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(float(value), float(low), float(high))


def _nan_intervals() -> dict[str, Interval]:
    nan = float("nan")
    return {m: Interval(nan, nan, nan) for m in BOOTSTRAP_METRICS}


def bootstrap_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    num_classes: int | None = None,
    labels: Sequence[int] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Accuracy and macro-F1 with seeded bootstrap percentile intervals.

    The rows are resampled with replacement ``n_boot`` times; each metric's interval is
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of its resampled values.
    Macro-F1 averages over ``labels``, else ``range(num_classes)`` (as
    :func:`~ferray.metrics.macro_f1` with ``num_classes``), else the classes in ``y_true`` or
    the predictions.

    Returns:
        ``{"accuracy": Interval, "macro_f1": Interval}`` (``Interval(value, low, high)``;
        ``._asdict()`` for JSON); NaNs when there are no rows.

    Raises:
        ValueError: ``n_boot`` is not an integer >= 1 or ``level`` is not in (0, 1).
    """
    _check_boot(n_boot, level)
    y_true = np.asarray(y_true, np.int64)
    pred = to_labels(y_pred)
    if len(y_true) == 0:
        return _nan_intervals()
    use = _labels(y_true, pred, num_classes, labels)
    full = _scores(np.ones((1, len(y_true))), y_true, pred, use)
    rng = np.random.default_rng(seed)
    parts = [_scores(w, y_true, pred, use) for w in _weights(len(y_true), int(n_boot), rng)]
    return {m: _interval(full[m][0], np.concatenate([p[m] for p in parts]), level) for m in BOOTSTRAP_METRICS}


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, metric: str = "accuracy", **kwargs) -> Interval:
    """One metric (``"accuracy"`` or ``"macro_f1"``) of :func:`bootstrap_metrics`."""
    _check_metric(metric)
    return bootstrap_metrics(y_true, y_pred, **kwargs)[metric]


def paired_bootstrap_metrics(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    *,
    num_classes: int | None = None,
    labels: Sequence[int] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """``metric(a) - metric(b)`` on the same rows for accuracy and macro-F1, with paired bootstrap intervals.

    Both models are scored on the same resamples, so the interval reflects the rows on
    which they differ: at ``level``, a gain is real when the interval excludes 0 (e.g. an
    ensemble against the best single model on the holdout).

    Returns:
        ``{"accuracy": Interval, "macro_f1": Interval}``; NaNs when there are no rows.

    Raises:
        ValueError: the three arrays differ in rows, or bad ``n_boot``/``level``.
    """
    _check_boot(n_boot, level)
    y_true = np.asarray(y_true, np.int64)
    a, b = to_labels(pred_a), to_labels(pred_b)
    if not len(y_true) == len(a) == len(b):
        raise ValueError(f"y_true, pred_a and pred_b have {len(y_true)}, {len(a)} and {len(b)} rows; they must match")
    if len(y_true) == 0:
        return _nan_intervals()
    use = _labels(y_true, np.concatenate([a, b]), num_classes, labels)

    def diff(w: np.ndarray) -> dict[str, np.ndarray]:
        sa, sb = _scores(w, y_true, a, use), _scores(w, y_true, b, use)
        return {m: sa[m] - sb[m] for m in BOOTSTRAP_METRICS}

    full = diff(np.ones((1, len(y_true))))
    rng = np.random.default_rng(seed)
    parts = [diff(w) for w in _weights(len(y_true), int(n_boot), rng)]
    return {m: _interval(full[m][0], np.concatenate([p[m] for p in parts]), level) for m in BOOTSTRAP_METRICS}


def paired_bootstrap(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, metric: str = "accuracy", **kwargs
) -> Interval:
    """One metric (``"accuracy"`` or ``"macro_f1"``) of :func:`paired_bootstrap_metrics`."""
    _check_metric(metric)
    return paired_bootstrap_metrics(y_true, pred_a, pred_b, **kwargs)[metric]
