"""Stacking: a multinomial logistic regression over the members' log-probabilities.

The meta-learner is one linear layer and a softmax, so an exporter can ship it as such::

    x = concat_m( log(clip(p_m, 1e-7, 1)) )        # (n_members * n_classes,), member-major
    predict_proba = softmax(coef_ @ x + intercept_)

Its out-of-fold predictions come from an inner cross-validation over the rows (stratified,
seeded, and grouped when ``fit`` gets the rows' groups), so no row's label, nor a copy's of
the same face, reaches its own stacked prediction.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ferray.ensemble._base import EPS, EnsembleMethod, check_setting
from ferray.ensemble._cv import INNER_FOLDS, inner_splits
from ferray.ensemble._registry import register_ensemble
from ferray.metrics import accuracy, log_loss

__all__ = ["StackingEnsemble", "stacking_features"]

META_LEARNERS = ("logistic",)


def stacking_features(P: np.ndarray) -> np.ndarray:
    """The meta-learner's input: ``(n_rows, n_members * n_classes)`` log-probabilities, member-major.

    Column ``m * n_classes + c`` is ``log(clip(P[m, :, c], 1e-7, 1))``.
    """
    P = np.asarray(P, dtype=np.float64)
    n_members, n_rows, n_classes = P.shape
    return np.log(np.clip(P, EPS, 1.0)).transpose(1, 0, 2).reshape(n_rows, n_members * n_classes)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@register_ensemble("stacking")
class StackingEnsemble(EnsembleMethod):
    """A logistic-regression meta-learner on the members' OOF log-probabilities.

    ``fit`` first predicts every row with meta-learners fitted on the other inner folds
    (``oof_proba_``, scored as ``inner_cv_score_``), then refits one meta-learner on all
    rows; :meth:`predict_proba` applies the refitted one::

        predict_proba(P) = softmax(coef_ @ concat_m(log(clip(P[m], 1e-7, 1))) + intercept_)

    Args:
        meta: the meta-learner; ``"logistic"`` (scikit-learn's multinomial
            ``LogisticRegression``, L2 penalty, lbfgs, tolerance 1e-6).
        C: inverse L2 regularisation strength of the meta-learner, > 0.
        inner_folds: inner cross-validation folds (>= 2; stratified by label, shuffled
            with ``seed`` and, given ``groups`` at :meth:`fit`, grouped), or one fold index per row.
        seed: shuffles the inner folds.

    Attributes:
        coef_: ``(n_classes, n_members * n_classes)``; column ``m * n_classes + c`` weighs
            member ``m``'s log-probability of class ``c``. With two classes it is written in
            the same softmax form (scikit-learn's single logistic row ``w`` becomes ``[-w/2, w/2]``).
        intercept_: ``(n_classes,)``.
        oof_proba_: ``(n_rows, n_classes)`` inner-cross-validated predictions of the fit rows.
        inner_cv_score_: the log-loss of ``oof_proba_`` (lower is better).
        inner_cv_accuracy_: the accuracy of ``oof_proba_``.
    """

    def __init__(self, meta: str = "logistic", C: float = 1.0, inner_folds: Any = INNER_FOLDS, seed: int = 0):
        self.meta = meta
        self.C = C
        self.inner_folds = inner_folds
        self.seed = seed

    def _meta_learner(self):
        from sklearn.linear_model import LogisticRegression

        # A tighter tolerance than scikit-learn's 1e-4: the coefficients are shipped, not only the argmax.
        return LogisticRegression(C=float(self.C), tol=1e-6, max_iter=2000)

    def fit(self, P: Any, y: Any, groups: Any = None) -> StackingEnsemble:
        """Fit on OOF probabilities ``P`` ``(n_members, n_rows, n_classes)`` and labels ``y``.

        ``groups`` (one label per row: subjects, duplicate clusters; the fold plan's
        groups) keeps each group inside one inner fold, so ``oof_proba_`` and the inner-CV
        scores never come from a meta-learner that saw a copy of the row. It changes only
        the inner splits: the final meta-learner is fitted on all rows either way.
        """
        from sklearn.base import clone
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import cross_val_predict

        check_setting("meta", self.meta, choices=META_LEARNERS)
        check_setting("C", self.C, low=0, strict_low=True)
        check_setting("seed", self.seed, low=0, integer=True)
        P, y = self._check_fit_input(P, y)
        n_classes = self.n_classes_
        missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
        if missing:
            raise ValueError(
                f"class(es) {missing} have no rows among the labels; stacking learns a weight per "
                f"class and needs every one of the {n_classes} classes"
            )
        splits = inner_splits(y, self.inner_folds, self.seed, groups)
        X = stacking_features(P)
        # Centred features: the same optimum (the intercept is not penalised) in a fraction of
        # lbfgs's iterations; the centre is folded back into intercept_ below. It uses no label.
        centre = X.mean(axis=0)
        X = X - centre
        learner = self._meta_learner()
        with warnings.catch_warnings():
            # lbfgs may stop a little short on separable folds; the fit is still usable.
            warnings.simplefilter("ignore", ConvergenceWarning)
            oof = cross_val_predict(clone(learner), X, y, cv=splits, method="predict_proba")
            final = clone(learner).fit(X, y)
        # cross_val_predict fills a class absent from a training split with 0: keep rows summing to 1.
        self.oof_proba_ = oof / oof.sum(axis=1, keepdims=True)
        self.inner_cv_score_ = log_loss(y, self.oof_proba_, eps=EPS)
        self.inner_cv_accuracy_ = accuracy(y, self.oof_proba_)
        coef, intercept = final.coef_, final.intercept_ - final.coef_ @ centre
        if n_classes == 2 and coef.shape[0] == 1:
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        return self

    def _combine(self, P: np.ndarray) -> np.ndarray:
        return _softmax(stacking_features(P) @ self.coef_.T + self.intercept_)

    def _learned(self) -> dict:
        return {
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "features": "log_probs",
            "eps": EPS,
            "formula": "softmax(coef @ concat_m(log(clip(p_m, eps, 1))) + intercept)",
            "inner_cv_log_loss": self.inner_cv_score_,
            "inner_cv_accuracy": self.inner_cv_accuracy_,
        }
