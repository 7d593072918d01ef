"""What every ensemble method shares: the scikit-learn estimator contract over member probabilities.

An ensemble method combines ``P``, the class probabilities of ``n_members`` models for the
same rows, shape ``(n_members, n_rows, n_classes)``, into one ``(n_rows, n_classes)``
matrix. Settings live in ``__init__`` and are only checked in :meth:`fit`, which learns from
``P`` and the labels ``y`` and returns ``self``; what it learns ends in ``_``; ``fit`` never
rewrites a setting, so :func:`sklearn.base.clone` gives an unfitted copy with the same settings.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["EnsembleMethod", "check_member_proba", "check_labels"]

#: Probabilities are clipped to this before a logarithm (as :func:`ferray.metrics.log_loss`).
EPS = 1e-7

# Member probabilities are float32 TTA means: allow rounding above 1.
_PROBA_SLACK = 1e-4


def check_member_proba(P: Any, *, name: str = "P") -> np.ndarray:
    """``P`` as float64 ``(n_members, n_rows, n_classes)``; ``ValueError`` saying what is wrong.

    >>> check_member_proba([[[0.2, 0.8]]]).shape
    (1, 1, 2)
    """
    arr = np.asarray(P, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} has shape {arr.shape}, but must be (n_members, n_rows, n_classes): "
            "one probability matrix per member, stacked"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} has shape {arr.shape}; it needs at least one member, one row and one class")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite values (NaN or inf); pass class probabilities in [0, 1]"
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1 + _PROBA_SLACK:
        raise ValueError(
            f"{name} holds values outside [0, 1] (min {lo:g}, max {hi:g}); "
            "pass class probabilities (softmax outputs), not logits"
        )
    return arr


def check_labels(y: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """``y`` as int64 class indices ``(n_rows,)`` in ``[0, n_classes)``; ``ValueError`` otherwise."""
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise ValueError(f"y has shape {arr.shape}, but P has {n_rows} rows: pass one class index per row")
    if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
        raise ValueError("y holds non-integer values; pass class indices, not probabilities")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"y has dtype {arr.dtype}; pass integer class indices")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= n_classes:
        raise ValueError(
            f"y holds class {int(arr.min() if arr.min() < 0 else arr.max())}, but P has "
            f"{n_classes} classes: labels must be in [0, {n_classes - 1}]"
        )
    return arr


def check_setting(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    integer: bool = False,
    choices: tuple | None = None,
    strict_low: bool = False,
) -> Any:
    """A setting checked at ``fit``: ``The value of iterations is 0, but must be iterations >= 1``."""
    if choices is not None:
        if value not in choices:
            from ferray.errors import closest

            raise ValueError(
                f"The value of {name} is {value!r}{closest(str(value), map(str, choices))}; "
                f"must be one of {', '.join(map(repr, choices))}"
            )
        return value
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"The value of {name} is {value!r}, but must be {'an integer' if integer else 'a number'}")
    if low is not None and (value <= low if strict_low else value < low):
        raise ValueError(f"The value of {name} is {value!r}, but must be {name} {'>' if strict_low else '>='} {low:g}")
    return value


class EnsembleMethod(BaseEstimator):
    """Base of the ensemble methods: input checks, ``predict`` and a JSON summary.

    Subclasses implement ``fit(P, y)`` (setting ``n_members_`` and ``n_classes_`` through
    :meth:`_check_fit_input`) and ``_combine(P)``.
    """

    #: The registry name (set by :func:`~ferray.ensemble.register_ensemble`).
    name: ClassVar[str] = ""
    #: Whether ``fit`` learns from the labels. A method that does not (mean, vote) needs no
    #: cross-fitting for an honest out-of-fold score.
    learns_from_labels: ClassVar[bool] = True

    def _check_fit_input(self, P: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        P = check_member_proba(P)
        y = check_labels(y, P.shape[1], P.shape[2])
        self.n_members_, self.n_classes_ = int(P.shape[0]), int(P.shape[2])
        return P, y

    def _check_predict_input(self, P: Any) -> np.ndarray:
        check_is_fitted(self, ("n_members_", "n_classes_"))
        P = check_member_proba(P)
        if P.shape[0] != self.n_members_ or P.shape[2] != self.n_classes_:
            raise ValueError(
                f"P has {P.shape[0]} members and {P.shape[2]} classes, but {type(self).__name__} "
                f"was fitted on {self.n_members_} members and {self.n_classes_} classes"
            )
        return P

    def fit(self, P: Any, y: Any) -> EnsembleMethod:  # pragma: no cover - every method overrides it
        raise NotImplementedError

    def predict_proba(self, P: Any) -> np.ndarray:
        """Combined class probabilities ``(n_rows, n_classes)`` (rows sum to 1)."""
        return self._combine(self._check_predict_input(P))

    def predict(self, P: Any) -> np.ndarray:
        """Class indices ``(n_rows,)``: the argmax of :meth:`predict_proba` (ties: the lower index)."""
        return self.predict_proba(P).argmax(axis=1)

    def _combine(self, P: np.ndarray) -> np.ndarray:  # pragma: no cover - every method overrides it
        raise NotImplementedError

    def used_members(self) -> np.ndarray:
        """Positions of the members :meth:`predict_proba` reads: all of them, unless the method
        learned ``weights_`` and gave some members weight 0 (greedy's never-picked members)."""
        check_is_fitted(self, ("n_members_", "n_classes_"))
        weights = getattr(self, "weights_", None)
        if weights is None:
            return np.arange(self.n_members_)
        return np.flatnonzero(np.asarray(weights) > 0)

    def to_dict(self, names: Sequence[str] | None = None) -> dict:
        """A JSON-ready summary: the method, its settings and what it learned.

        With ``names`` (one per member, in the order fitted: the trial ids) it also names the
        ``members`` the combination reads (:meth:`used_members`), and what it learned per
        member refers to those alone: ``weights`` aligned with ``members``.

        >>> import numpy as np
        >>> from ferray.ensemble import make_ensemble
        >>> P = np.array([[[0.9, 0.1]], [[0.2, 0.8]]])
        >>> make_ensemble("mean").fit(P, [0]).to_dict(["t1", "t2"])["members"]
        ['t1', 't2']
        """
        check_is_fitted(self, ("n_members_", "n_classes_"))
        out = {"method": self.name, "settings": self.get_params()}
        if names is None:
            return {**out, **self._learned()}
        names = [str(n) for n in names]
        if len(names) != self.n_members_:
            raise ValueError(
                f"{len(names)} names for {self.n_members_} members: pass one name per member, "
                "in the order they were fitted"
            )
        used = self.used_members()
        return {**out, "members": [names[i] for i in used], **self._named(self._learned(), names, used)}

    def _learned(self) -> dict:
        return {}

    def _named(self, learned: dict, names: list[str], used: np.ndarray) -> dict:
        """``learned`` restated for the ``used`` members alone (``weights`` aligned with them)."""
        weights = learned.get("weights")
        if isinstance(weights, list) and len(weights) == self.n_members_:
            learned = {**learned, "weights": [weights[i] for i in used]}
        return learned
