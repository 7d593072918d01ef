"""Temperature scaling and calibration error of class probabilities (numpy only).

ferray's graphs and prediction files hold probabilities, not logits, so a temperature ``T``
acts on log-probabilities: ``softmax(log p / T)``. For a softmax model that is exactly
temperature scaling of its logits (log p differs from the logits by a per-row constant); for
an ensemble's averaged probabilities it is the same one-parameter family. ``T > 1`` softens
over-confident probabilities, ``T < 1`` sharpens under-confident ones; the argmax, so
accuracy and F1, never changes.

``ferray export`` fits ``T`` on the ensemble's out-of-fold rows and stores it in the bundle's
manifest; ``ferray predict`` and ``ferray explain`` apply it, and ``ferray report`` measures
it. :func:`apply_temperature` needs numpy alone (a predict-only install); :func:`fit_temperature`
imports scipy when it is called.

>>> import numpy as np
>>> apply_temperature(np.array([[0.8, 0.2]]), 1.0).round(3)
array([[0.8, 0.2]])
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "reliability",
    "expected_calibration_error",
    "fit_temperature",
    "apply_temperature",
    "is_temperature",
    "describe_calibration",
    "N_BINS",
]

#: Equal-width confidence bins of the reliability diagram and ECE (Guo et al., 2017 use 15).
N_BINS = 15
_EPS = 1e-12


def reliability(y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Top-label reliability bins: rows, accuracy and mean confidence per bin.

    Bin ``i`` holds the rows whose confidence (top probability) lies in
    ``(i/n_bins, (i+1)/n_bins]`` (the first bin also holds 0). Empty bins have ``None``
    accuracy and confidence.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins is {n_bins!r}, but must be an integer >= 1")
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    conf = proba.max(axis=1) if len(proba) else np.zeros(0)
    correct = (proba.argmax(axis=1) == y) if len(proba) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    return {
        "edges": edges.tolist(),
        "count": count.tolist(),
        "accuracy": [float(a / n) if n else None for a, n in zip(acc_sum, count)],
        "confidence": [float(c / n) if n else None for c, n in zip(conf_sum, count)],
    }


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE: ``sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|`` over the bins of :func:`reliability`.

    >>> expected_calibration_error(np.array([0, 1, 0, 0]),
    ...                            np.array([[.9, .1], [.9, .1], [.6, .4], [.6, .4]]), n_bins=10)
    0.4
    """
    bins = reliability(y_true, proba, n_bins)
    n = sum(bins["count"])
    if n == 0:
        return float("nan")
    gap = sum(c * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c)
    return round(float(gap / n), 12)


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise (probabilities are clipped at 1e-12 before the log).

    Returns float64; ``T == 1`` gives the probabilities back (renormalised).
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature is {temperature!r}, but must be a finite number > 0")
    z = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(y: np.ndarray, logp: np.ndarray, temperature: float) -> float:
    z = logp / temperature
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(y_true: np.ndarray, proba: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimises the negative log-likelihood of ``softmax(log p / T)``.

    A one-dimensional bounded search over ``log T`` (the NLL is smooth and unimodal in
    ``log T`` for this family; scipy's ``minimize_scalar``). Returns ``1.0`` for no rows.

    Raises:
        ValueError: labels and probabilities of different lengths, or bad bounds.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(y):
        raise ValueError(f"labels ({len(y)},) and probabilities {proba.shape} do not match")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds are {bounds!r}, but must satisfy 0 < low < high")
    if len(y) == 0:
        return 1.0
    logp = np.log(np.clip(proba, _EPS, 1.0))
    res = minimize_scalar(
        lambda t: _nll(y, logp, float(np.exp(t))),
        bounds=(np.log(lo), np.log(hi)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x))


def is_temperature(value: object) -> bool:
    """Whether ``value`` can be a stored temperature: a finite number > 0 (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and bool(np.isfinite(value)) and value > 0


def describe_calibration(entry: dict) -> str:
    """One line for a bundle manifest's ``calibration`` entry of a graph.

    >>> describe_calibration({"temperature": 1.0, "fitted_on": None, "reason": "no rows"})
    'T = 1: no rows'
    >>> describe_calibration({"temperature": 1.4213, "fitted_on": "out-of-fold", "rows": 300,
    ...                       "ece_before": 0.081, "ece_after": 0.023})
    'T = 1.421 fitted on 300 out-of-fold rows (ECE 0.081 -> 0.023)'
    """
    t = float(entry["temperature"])
    if not entry.get("fitted_on"):
        return f"T = {t:g}: {entry.get('reason') or 'no temperature was fitted'}"
    line = f"T = {t:.4g} fitted on {entry.get('rows', '?')} {entry['fitted_on']} rows"
    if entry.get("ece_before") is not None and entry.get("ece_after") is not None:
        line += f" (ECE {entry['ece_before']:.3f} -> {entry['ece_after']:.3f})"
    return line
