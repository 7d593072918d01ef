"""Evaluation metrics on numpy arrays (no torch, no scikit-learn), shared by training, search and ensembles.

Fold workers compute these every epoch, so they are plain numpy: importing scikit-learn
would add seconds to every worker's start-up. The results equal scikit-learn's
``f1_score(average="macro", zero_division=0)`` and ``precision_recall_fscore_support``.

``y_pred`` arguments accept either class indices ``(N,)`` or probabilities ``(N, C)``
(reduced with argmax).

>>> import numpy as np
>>> accuracy(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "accuracy",
    "macro_f1",
    "per_class_metrics",
    "au_f1",
    "log_loss",
    "to_labels",
    "Interval",
    "bootstrap_metrics",
    "bootstrap_ci",
    "paired_bootstrap",
    "paired_bootstrap_metrics",
    "cross_dataset_scores",
]


def to_labels(y_pred: np.ndarray) -> np.ndarray:
    """Class indices from indices ``(N,)`` or probabilities/logits ``(N, C)``."""
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred.astype(np.int64, copy=False)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows whose predicted class equals ``y_true``."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(to_labels(y_pred) == y_true))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean F1 over classes.

    With ``num_classes`` all classes count (absent and never-predicted ones score 0);
    without it, the classes in ``y_true`` or the predictions (scikit-learn's default).
    """
    y_true = np.asarray(y_true).astype(np.int64, copy=False)
    y_pred = to_labels(y_pred)
    labels = np.arange(num_classes) if num_classes is not None else np.union1d(y_true, y_pred)
    if not len(labels):
        return 0.0
    _, _, f1, _ = _prf(y_true, y_pred, labels)
    return float(f1.mean())


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
    """``{class_name: {"precision", "recall", "f1", "support"}}`` for every class, in order."""
    p, r, f, s = _prf(np.asarray(y_true).astype(np.int64, copy=False), to_labels(proba), np.arange(len(class_names)))
    return {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(class_names)
    }


def _prf(
    y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support of each of ``labels`` (0 where undefined)."""
    labels = np.asarray(labels, dtype=np.int64)
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], dtype=np.float64)
    predicted = np.array([np.sum(y_pred == c) for c in labels], dtype=np.float64)
    support = np.array([np.sum(y_true == c) for c in labels], dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, support


def au_f1(
    au_true: np.ndarray, au_prob: np.ndarray, threshold: float = 0.5, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """F1 per action unit and their mean over AUs that occur in ``au_true``.

    Args:
        au_true: 0/1 ``(N, A)``.
        au_prob: probabilities ``(N, A)``, positive when ``>= threshold``.
        threshold: decision threshold.
        mask: optional ``(N,)`` bool of rows whose AUs are known.

    Returns:
        ``(mean_f1, per_au)``; ``per_au[a]`` is NaN where AU ``a`` never occurs, and the mean
        is NaN when no AU occurs.
    """
    t = np.asarray(au_true) > 0.5
    pred = np.asarray(au_prob) >= threshold
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        t, pred = t[keep], pred[keep]
    tp = (t & pred).sum(axis=0).astype(np.float64)
    fp = (~t & pred).sum(axis=0)
    fn = (t & ~pred).sum(axis=0)
    occurs = t.any(axis=0)
    per_au = np.full(t.shape[1], np.nan)
    per_au[occurs] = 2 * tp[occurs] / (2 * tp[occurs] + fp[occurs] + fn[occurs])
    mean = float(per_au[occurs].mean()) if occurs.any() else float("nan")
    return mean, per_au


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood; ``y_true`` is class indices ``(N,)`` or soft ``(N, C)``."""
    proba = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0)
    y_true = np.asarray(y_true)
    if y_true.ndim == 1:
        return float(-np.mean(np.log(proba[np.arange(len(y_true)), y_true.astype(np.int64)])))
    return float(-np.mean(np.sum(y_true * np.log(proba), axis=1)))


# --------------------------------------------------------------------------- bootstrap intervals


class Interval(NamedTuple):
    """A metric on the full sample and its bootstrap percentile interval."""

    value: float
    low: float
    high: float


_BOOT_METRICS = ("accuracy", "macro_f1")
# Bootstrap weights are drawn in blocks of at most this many cells (resamples x rows).
_BLOCK_CELLS = 4_000_000


def _check_boot(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot is {n_boot!r}, but must be an integer >= 1 (1000 or more for a 95% interval)")
    if not 0 < level < 1:
        raise ValueError(f"level is {level!r}, but must lie in (0, 1), e.g. 0.95")


def _weights(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of ``(b, n)`` resampling counts (each row one bootstrap sample of the ``n`` rows)."""
    per_block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_boot, per_block):
        b = min(per_block, n_boot - start)
        idx = rng.integers(0, n, (b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.reshape(-1), minlength=b * n).reshape(b, n).astype(np.float64)


def _scores(w: np.ndarray, y_true: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 (over ``labels``) of each weighted sample (rows of ``w``)."""
    n = w.shape[1]
    truth = y_true[:, None] == labels[None, :]
    said = pred[:, None] == labels[None, :]
    tp = w @ (truth & said).astype(np.float64)
    denom = w @ truth.astype(np.float64) + w @ said.astype(np.float64)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"accuracy": w @ (pred == y_true).astype(np.float64) / n, "macro_f1": f1.mean(axis=1)}


def _labels(y_true: np.ndarray, pred: np.ndarray, num_classes: int | None, labels: Sequence[int] | None) -> np.ndarray:
    if labels is not None:
        return np.asarray(labels, np.int64)
    if num_classes is not None:
        return np.arange(num_classes)
    return np.union1d(y_true, pred).astype(np.int64)


def _interval(value: float, samples: np.ndarray, level: float) -> Interval:
    low, high = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(float(value), float(low), float(high))


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
    Macro-F1 averages over ``labels``, else ``range(num_classes)`` (as :func:`macro_f1`
    with ``num_classes``), else the classes in ``y_true`` or the predictions.

    Returns:
        ``{"accuracy": Interval, "macro_f1": Interval}`` (``Interval(value, low, high)``;
        ``._asdict()`` for JSON); NaNs when there are no rows.

    >>> ci = bootstrap_metrics(np.array([0, 1] * 50), np.array([0, 1] * 45 + [1, 0] * 5), seed=0)
    >>> round(ci["accuracy"].value, 2), ci["accuracy"].low < 0.9 < ci["accuracy"].high
    (0.9, True)
    """
    _check_boot(n_boot, level)
    y_true = np.asarray(y_true, np.int64)
    pred = to_labels(y_pred)
    if len(y_true) == 0:
        nan = float("nan")
        return {m: Interval(nan, nan, nan) for m in _BOOT_METRICS}
    use = _labels(y_true, pred, num_classes, labels)
    full = _scores(np.ones((1, len(y_true))), y_true, pred, use)
    rng = np.random.default_rng(seed)
    parts = [_scores(w, y_true, pred, use) for w in _weights(len(y_true), int(n_boot), rng)]
    return {m: _interval(full[m][0], np.concatenate([p[m] for p in parts]), level) for m in _BOOT_METRICS}


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, metric: str = "accuracy", **kwargs) -> Interval:
    """One metric (``"accuracy"`` or ``"macro_f1"``) of :func:`bootstrap_metrics`."""
    if metric not in _BOOT_METRICS:
        raise ValueError(f"metric is {metric!r}, but must be one of {list(_BOOT_METRICS)}")
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
    """
    _check_boot(n_boot, level)
    y_true = np.asarray(y_true, np.int64)
    a, b = to_labels(pred_a), to_labels(pred_b)
    if not len(y_true) == len(a) == len(b):
        raise ValueError(f"y_true, pred_a and pred_b have {len(y_true)}, {len(a)} and {len(b)} rows; they must match")
    if len(y_true) == 0:
        nan = float("nan")
        return {m: Interval(nan, nan, nan) for m in _BOOT_METRICS}
    use = _labels(y_true, np.concatenate([a, b]), num_classes, labels)

    def diff(w: np.ndarray) -> dict[str, np.ndarray]:
        sa, sb = _scores(w, y_true, a, use), _scores(w, y_true, b, use)
        return {m: sa[m] - sb[m] for m in _BOOT_METRICS}

    full = diff(np.ones((1, len(y_true))))
    rng = np.random.default_rng(seed)
    parts = [diff(w) for w in _weights(len(y_true), int(n_boot), rng)]
    return {m: _interval(full[m][0], np.concatenate([p[m] for p in parts]), level) for m in _BOOT_METRICS}


def paired_bootstrap(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, metric: str = "accuracy", **kwargs
) -> Interval:
    """One metric (``"accuracy"`` or ``"macro_f1"``) of :func:`paired_bootstrap_metrics`."""
    if metric not in _BOOT_METRICS:
        raise ValueError(f"metric is {metric!r}, but must be one of {list(_BOOT_METRICS)}")
    return paired_bootstrap_metrics(y_true, pred_a, pred_b, **kwargs)[metric]


def cross_dataset_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    model_classes: Sequence[str],
    data_classes: Sequence[str],
    *,
    restrict: bool = False,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Score a model on another dataset, classes matched by canonical name.

    Args:
        y_true: the data's labels (indices into ``data_classes``).
        y_pred: the model's probabilities ``(N, len(model_classes))`` or class indices.
        model_classes, data_classes: each side's class names (matched by
            :func:`ferray.data.match_classes`: ``anger`` = ``angry``, ``happiness`` = ``happy``).
        restrict: predict only among the model classes the data has (needs
            probabilities); by default a prediction of a class the data lacks counts as wrong.

    Returns:
        ``{"matched": {data class: model class}, "excluded": {data class: rows},
        "rows": rows scored, "rows_excluded", "accuracy": Interval, "macro_f1": Interval}``.
        Rows of classes the model lacks are left out, never silently: ``excluded`` lists
        them with their counts. Macro-F1 averages over the matched classes.

    Raises:
        DataError: the two share no class (the message lists both).

    >>> s = cross_dataset_scores(np.array([0, 1, 2]), np.array([1, 0, 0]), ["happy", "angry"],
    ...                          ["anger", "happiness", "contempt"], n_boot=10)
    >>> s["matched"], s["excluded"], s["accuracy"].value
    ({'anger': 'angry', 'happiness': 'happy'}, {'contempt': 1}, 1.0)
    """
    from ferray.data import match_classes

    mapping, unknown = match_classes(model_classes, data_classes)
    model_index = {n: i for i, n in enumerate(model_classes)}
    table = np.asarray([model_index[mapping[n]] if n in mapping else -1 for n in data_classes], np.int64)
    y_true = np.asarray(y_true, np.int64)
    target = table[y_true]
    keep = target >= 0
    matched = np.asarray(sorted(model_index[m] for m in mapping.values()), np.int64)
    y_pred = np.asarray(y_pred)
    if restrict:
        if y_pred.ndim != 2:
            raise ValueError("restrict=True needs probabilities (N, n_model_classes), not class indices")
        pred = matched[np.argmax(y_pred[:, matched], axis=1)]
    else:
        pred = to_labels(y_pred)
    counts = np.bincount(y_true[~keep], minlength=len(data_classes))
    scores = bootstrap_metrics(target[keep], pred[keep], labels=matched, n_boot=n_boot, level=level, seed=seed)
    return {
        "matched": mapping,
        "excluded": {n: int(counts[i]) for i, n in enumerate(data_classes) if n in unknown},
        "rows": int(keep.sum()),
        "rows_excluded": int((~keep).sum()),
        **scores,
    }
