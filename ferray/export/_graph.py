"""The PyTorch modules that become a bundle's ONNX graphs.

A graph takes what a user has, a batch of ``uint8`` images ``(N, H, W, C)`` (NHWC, the
layout of decoded image files), and does the evaluation transform of
:mod:`ferray.training.augment` itself: ``float32``, ``x * 1/(255 std) - mean/std`` (with
mean = std = 0.5: ``x / 127.5 - 1``), NHWC -> NCHW. So a reader needs no torch and no
knowledge of the normalisation: only the input size and channel count.

Each member is the mean of its k fold models' softmax; members are combined by one of
:data:`COMBINERS` (``mean``, ``greedy``, ``vote``, ``stacking``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ferray.ensemble._vote import VOTE_NUDGE
from ferray.errors import ConfigError, closest

__all__ = [
    "COMBINERS",
    "EnsembleGraph",
    "FoldMean",
    "ModelGraph",
    "Preprocess",
    "Stacking",
    "Vote",
    "WeightedMean",
    "build_combiner",
]


class Preprocess(nn.Module):
    """``uint8 (N, H, W, C)`` -> ``float32 (N, C, H, W)`` normalised like the evaluation transform."""

    def __init__(
        self, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5, channels: int = 1
    ) -> None:
        super().__init__()
        mean_v = np.broadcast_to(np.asarray(mean, np.float64), (channels,))
        std_v = np.broadcast_to(np.asarray(std, np.float64), (channels,))
        if np.any(std_v <= 0):
            raise ConfigError(f"normalise std is {std}, but must be > 0")
        # The training transform computes float32(x * float32(1/127.5)) - 1: the same
        # float32 constants keep the graph bit-compatible with it.
        scale = torch.tensor((1.0 / (255.0 * std_v)).astype(np.float32)).view(1, channels, 1, 1)
        shift = torch.tensor((-mean_v / std_v).astype(np.float32)).view(1, channels, 1, 1)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        return x * self.scale + self.shift


class FoldMean(nn.Module):
    """One member: the mean of its fold models' class probabilities ``(N, C)``."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("a member needs at least one fold model")
        self.folds = nn.ModuleList(models)

    def forward(self, x: Tensor) -> Tensor:
        total = None
        for model in self.folds:
            out = model(x)
            logits = out["logits"] if isinstance(out, dict) else out
            p = torch.softmax(logits.to(torch.float32), dim=-1)
            total = p if total is None else total + p
        return total / len(self.folds)


def _check_weights(weights: Sequence[float] | None, n: int, what: str) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,):
        raise ConfigError(f"{what}: {w.size} weight(s) for {n} member(s)")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"{what}: weights {w.tolist()} must be finite, >= 0 and not all 0")
    return w / w.sum()


class WeightedMean(nn.Module):
    """``sum_m w_m p_m`` with non-negative weights summing to one (``mean``, ``greedy``)."""

    def __init__(self, weights: Sequence[float] | None, n_members: int) -> None:
        super().__init__()
        self.weights_ = _check_weights(weights, n_members, "ensemble weights")
        self.register_buffer("w", torch.tensor(self.weights_, dtype=torch.float32).view(1, -1, 1), persistent=False)

    def forward(self, member_probs: Tensor) -> Tensor:  # (N, M, C)
        return (member_probs * self.w).sum(dim=1)

    def describe(self) -> dict:
        return {"weights": self.weights_.tolist()}


class Vote(nn.Module):
    """Vote shares: each member votes for its top class (:class:`ferray.ensemble.VoteEnsemble`).

    A member's own tie goes to the lower class index; so that a tied vote goes to the
    class with the higher mean member probability, the shares are nudged by ``1e-3`` times
    the (weighted) mean probability and renormalised::

        probs = (sum_m w_m onehot(argmax p_m) + 1e-3 * sum_m w_m p_m) / row sum
    """

    NUDGE = VOTE_NUDGE

    def __init__(self, weights: Sequence[float] | None, n_members: int, n_classes: int) -> None:
        super().__init__()
        self.weights_ = _check_weights(weights, n_members, "vote weights")
        self.register_buffer("w", torch.tensor(self.weights_, dtype=torch.float32).view(1, -1, 1), persistent=False)
        self.register_buffer("classes", torch.arange(n_classes).view(1, 1, -1), persistent=False)

    def forward(self, member_probs: Tensor) -> Tensor:
        winners = member_probs.argmax(dim=-1, keepdim=True)  # first index of the max: the lower class
        votes = (self.classes == winners).to(torch.float32)
        shares = (votes * self.w).sum(dim=1) + self.NUDGE * (member_probs * self.w).sum(dim=1)
        return shares / shares.sum(dim=-1, keepdim=True)

    def describe(self) -> dict:
        return {"weights": self.weights_.tolist()}


#: Features a stacker may read from the members' probabilities (``log_probs`` is ferray.ensemble's
#: spelling of ``log_proba``).
STACKER_INPUTS = ("log_proba", "proba")
_INPUT_ALIASES = {"log_probs": "log_proba", "probs": "proba"}


class Stacking(nn.Module):
    """A multinomial logistic stacker: ``softmax(concat_m f(p_m) @ coef.T + intercept)``.

    ``f`` is ``log(clip(p, eps, 1))`` (``input="log_proba"``) or the identity (``"proba"``);
    the concatenation is member-major: ``[f(p_1)[0..C), f(p_2)[0..C), ...]``, matching
    ``coef`` of shape ``(C, M * C)`` (scikit-learn's ``LogisticRegression.coef_``).
    """

    def __init__(
        self,
        coef: np.ndarray,
        intercept: np.ndarray,
        n_members: int,
        n_classes: int,
        input: str = "log_proba",
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
        input = _INPUT_ALIASES.get(input, input)
        if coef.shape != (n_classes, n_members * n_classes):
            raise ConfigError(
                f"stacker coef has shape {coef.shape}, but {n_members} member(s) x {n_classes} "
                f"classes need ({n_classes}, {n_members * n_classes})"
            )
        if intercept.shape != (n_classes,):
            raise ConfigError(f"stacker intercept has shape {intercept.shape}, but must be ({n_classes},)")
        if input not in STACKER_INPUTS:
            raise ConfigError(
                f"stacker input {input!r}{closest(input, STACKER_INPUTS)}; valid inputs: {', '.join(STACKER_INPUTS)}"
            )
        if not np.all(np.isfinite(coef)) or not np.all(np.isfinite(intercept)):
            raise ConfigError("stacker coef and intercept must be finite")
        if not eps > 0:
            raise ConfigError(f"stacker eps is {eps}, but must be > 0")
        self.coef_, self.intercept_, self.input, self.eps = coef, intercept, input, float(eps)
        self.register_buffer("coef_t", torch.tensor(coef.T, dtype=torch.float32), persistent=False)
        self.register_buffer("bias", torch.tensor(intercept, dtype=torch.float32), persistent=False)

    def forward(self, member_probs: Tensor) -> Tensor:
        feats = member_probs
        if self.input == "log_proba":
            feats = torch.log(feats.clamp(self.eps, 1.0))
        feats = feats.reshape(feats.shape[0], -1)  # (N, M*C), member-major
        return torch.softmax(feats @ self.coef_t + self.bias, dim=-1)

    def describe(self) -> dict:
        return {
            "stacker": {
                "coef": self.coef_.tolist(),
                "intercept": self.intercept_.tolist(),
                "input": self.input,
                "eps": self.eps,
            }
        }


def _mean(weights=None, stacker=None, *, n_members: int, n_classes: int) -> nn.Module:
    if weights is not None and len(set(np.round(np.asarray(weights, np.float64) / np.sum(weights), 12))) > 1:
        raise ConfigError(
            f"method 'mean' weighs members equally; use 'greedy' for weights {np.asarray(weights).tolist()}"
        )
    return WeightedMean(None, n_members)


def _greedy(weights=None, stacker=None, *, n_members: int, n_classes: int) -> nn.Module:
    if weights is None:
        raise ConfigError(
            "method 'greedy' needs the members' weights (the selection counts of greedy ensemble selection)"
        )
    return WeightedMean(weights, n_members)


def _vote(weights=None, stacker=None, *, n_members: int, n_classes: int) -> nn.Module:
    return Vote(weights, n_members, n_classes)


def _stacking(weights=None, stacker=None, *, n_members: int, n_classes: int) -> nn.Module:
    if stacker is None:
        raise ConfigError(
            "method 'stacking' needs a stacker: {'coef': (C, M*C), 'intercept': (C,)} "
            "or an object with coef_ and intercept_"
        )
    coef, intercept, kwargs = _stacker_parts(stacker)
    return Stacking(coef, intercept, n_members, n_classes, **kwargs)


def _stacker_parts(stacker) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(coef, intercept, {"input", "eps"})`` from a stacker dict or a fitted stacker.

    A dict is ``ferray.ensemble``'s summary (``StackingEnsemble.to_dict()``) or a plain
    ``{"coef", "intercept"}``; keys other than ``coef``, ``intercept``, ``input``/``features``
    and ``eps`` (its formula, scores, settings) are descriptions and are not read.
    """
    if isinstance(stacker, dict):
        if "coef" not in stacker or "intercept" not in stacker:
            raise ConfigError(
                f"stacker keys {sorted(stacker)}: expected 'coef' (C, M*C), 'intercept' (C,) and "
                "optionally 'input' (log_proba|proba) and 'eps'"
            )
        kwargs = {}
        feature = stacker.get("input", stacker.get("features"))
        if feature is not None:
            kwargs["input"] = str(feature)
        if stacker.get("eps") is not None:
            kwargs["eps"] = float(stacker["eps"])
        return np.asarray(stacker["coef"]), np.asarray(stacker["intercept"]), kwargs
    if hasattr(stacker, "coef_") and hasattr(stacker, "intercept_"):
        # ferray.ensemble.StackingEnsemble: log(clip(p, 1e-7, 1)) features, member-major.
        kwargs = {}
        if hasattr(stacker, "to_dict"):
            learned = stacker.to_dict()
            kwargs = _stacker_parts({k: learned[k] for k in ("coef", "intercept", "features", "eps") if k in learned})[
                2
            ]
        return np.asarray(stacker.coef_), np.asarray(stacker.intercept_), kwargs
    raise ConfigError(
        f"stacker {type(stacker).__name__}: expected a dict with 'coef' and 'intercept' "
        "or a fitted stacker with coef_ and intercept_"
    )


#: Ensemble methods -> factory ``(weights, stacker, *, n_members, n_classes) -> combiner``.
COMBINERS: dict[str, Callable[..., nn.Module]] = {
    "mean": _mean,
    "greedy": _greedy,
    "vote": _vote,
    "stacking": _stacking,
}


def build_combiner(method: str, *, n_members: int, n_classes: int, weights=None, stacker=None) -> nn.Module:
    """The module that combines ``(N, M, C)`` member probabilities into ``(N, C)``.

    Raises:
        ConfigError: unknown method (the message lists the valid ones), or weights/stacker
            that do not fit the members.
    """
    if method not in COMBINERS:
        raise ConfigError(
            f"unknown ensemble method {method!r}{closest(method, COMBINERS)}; valid methods: {', '.join(COMBINERS)}"
        )
    return COMBINERS[method](weights, stacker, n_members=n_members, n_classes=n_classes)


class EnsembleGraph(nn.Module):
    """``images uint8 (N, H, W, C)`` -> ``probs (N, C)`` and ``member_probs (N, M, C)``."""

    def __init__(self, members: Sequence[FoldMean], combiner: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.members = nn.ModuleList(members)
        self.combiner = combiner

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.preprocess(images)
        member_probs = torch.stack([m(x) for m in self.members], dim=1)
        return self.combiner(member_probs), member_probs


class ModelGraph(nn.Module):
    """One model (a student, or a single member): ``images`` -> ``probs (N, C)``."""

    def __init__(self, member: FoldMean, preprocess: Preprocess) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.member = member

    def forward(self, images: Tensor) -> Tensor:
        return self.member(self.preprocess(images))
