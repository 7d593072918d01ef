"""Class activation maps of a FER model through pytorch-grad-cam, and integrated gradients through captum.

:class:`CAMExplainer` wraps a :class:`~ferray.training.FERModel` (whose ``forward`` returns a
dict) so that pytorch-grad-cam sees logits, picks the target layer of the model's family
(:mod:`ferray.explain._families`) and returns one map per image, of the input's size, in
``[0, 1]``. :func:`integrated_gradients` needs no target layer.

>>> import torch
>>> from ferray.training import build_model
>>> from ferray.training.config import ModelConfig
>>> model = build_model(ModelConfig(backbone="test_resnet"), num_classes=7, in_chans=1)
>>> maps = CAMExplainer(model, "gradcam")(torch.zeros(2, 1, 48, 48), targets=[3, 3])
>>> maps.shape
(2, 48, 48)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from torch import Tensor, nn

from ferray.errors import ConfigError, closest
from ferray.explain._families import TargetLayer, choose_target_layer

__all__ = [
    "CAM_METHODS",
    "METHODS",
    "FILE_TAGS",
    "CAMExplainer",
    "LogitsOnly",
    "integrated_gradients",
    "ig_map",
    "check_method",
    "check_ig_steps",
    "IG_BATCH_ROWS",
]

#: ``--method`` names served by pytorch-grad-cam -> its class name.
CAM_METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "scorecam": "ScoreCAM",
    "eigencam": "EigenCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
}
#: Every method ``ferray explain`` accepts: the CAMs and integrated gradients.
METHODS: tuple[str, ...] = (*CAM_METHODS, "ig")
#: Each method's tag in overlay file names (``000_face_gradcampp.png``): lower-case letters and
#: digits, a different one per method (stripping ``++`` alone would name gradcam++'s files gradcam's).
FILE_TAGS: dict[str, str] = {
    "gradcam": "gradcam",
    "gradcam++": "gradcampp",
    "scorecam": "scorecam",
    "eigencam": "eigencam",
    "layercam": "layercam",
    "hirescam": "hirescam",
    "ig": "ig",
}
#: Methods whose map does not depend on the target class.
CLASS_AGNOSTIC = ("eigencam",)


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else ``ConfigError`` naming the valid ones."""
    if method not in METHODS:
        raise ConfigError(
            f"unknown explain method {method!r}{closest(str(method), METHODS)} (valid methods: {', '.join(METHODS)})"
        )
    return method


class LogitsOnly(nn.Module):
    """``model(x)["logits"]``: a FERModel as pytorch-grad-cam (and captum) expect a classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return out["logits"] if isinstance(out, dict) else out


def _cam_class(method: str):
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, CAM_METHODS[method])


class CAMExplainer:
    """CAM maps of one model: ``explainer(x, targets) -> (N, H, W)`` float32 in ``[0, 1]``.

    Args:
        model: a :class:`~ferray.training.FERModel` (or any module returning logits, or a
            dict with ``"logits"``) whose backbone belongs to a known family.
        method: one of :data:`CAM_METHODS` (``"gradcam"``, ``"gradcam++"``, ``"scorecam"``,
            ``"eigencam"``, ``"layercam"``, ``"hirescam"``).
        layer: a target layer path below the backbone (``"stages[-2]"``) instead of the
            family's choice.
        batch_size: forward passes per batch for ScoreCAM.

    Attributes (after the first call): ``target_layer_`` (:class:`TargetLayer`).

    Raises:
        ConfigError: an unknown method, or a backbone without a known target layer (the
            message names ``ig``, which works for any model).
    """

    def __init__(
        self, model: nn.Module, method: str = "gradcam", *, layer: str | None = None, batch_size: int = 32
    ) -> None:
        check_method(method)
        if method == "ig":
            raise ConfigError("method 'ig' is not a CAM; use ferray.explain.integrated_gradients")
        self.model = model
        self.method = method
        self.layer = layer
        self.batch_size = batch_size
        self.target_layer_: TargetLayer | None = None
        self._shape: tuple[int, int, int] | None = None

    def _target(self, input_shape: tuple[int, int, int]) -> TargetLayer:
        if self.target_layer_ is None or self._shape != input_shape:
            self.target_layer_ = choose_target_layer(self.model, input_shape, self.layer)
            self._shape = input_shape
        return self.target_layer_

    def __call__(self, x: Tensor, targets: Sequence[int] | None = None) -> np.ndarray:
        """Maps for ``x`` ``(N, C, H, W)`` (normalised as in training) toward ``targets`` (class indexes).

        ``targets=None`` explains each image's predicted class.
        """
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if x.ndim != 4:
            raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
        target = self._target(tuple(int(s) for s in x.shape[1:]))
        if hasattr(target.reshape, "set_input"):
            target.reshape.set_input(int(x.shape[2]), int(x.shape[3]))
        wrapped = LogitsOnly(self.model).eval()
        cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
        with _cam_class(self.method)(
            model=wrapped, target_layers=[target.module], reshape_transform=target.reshape
        ) as cam:
            if self.method == "scorecam":
                cam.batch_size = self.batch_size
            # ScoreCAM draws tqdm bars on stderr for every image: keep the caller's terminal quiet.
            with contextlib.redirect_stderr(io.StringIO()):
                maps = cam(input_tensor=x, targets=cam_targets)
        maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0)
        return np.clip(maps, 0.0, 1.0)


#: Interpolated images per forward pass of :func:`integrated_gradients` (at least one step per image).
IG_BATCH_ROWS = 256


def check_ig_steps(steps: int, name: str = "ig_steps", error: type[Exception] = ConfigError) -> int:
    """``steps`` if it is an integer >= 2 (captum's Riemann sums need two points), else ``error``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise error(f"{name} is {steps!r}, but must be an integer >= 2 (integration steps of ig)")
    return steps


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    targets: Sequence[int],
    *,
    steps: int = 32,
    baseline: Tensor | float = -1.0,
    internal_batch_size: int | None = None,
) -> Tensor:
    """Integrated gradients of the target logits w.r.t. the input: ``(N, C, H, W)`` attributions.

    Captum's :class:`captum.attr.IntegratedGradients` with the midpoint Riemann sum
    (``method="riemann_middle"``, Sundararajan et al., 2017):
    ``(x - x0) * mean_k grad f(x0 + (k - 1/2)/steps (x - x0))``, with ``f`` the target
    class's logit and ``x0`` the baseline: ``-1.0`` is a black image in training's
    normalisation; a tensor broadcastable to ``x`` is taken as is. Completeness: the
    attributions of an image sum to about ``f(x) - f(x0)``.

    Args:
        model: a FERModel (its ``"logits"`` are explained) or any module returning logits.
        x: ``(N, C, H, W)`` images, normalised as in training.
        targets: one class index per image.
        steps: integration steps (>= 2).
        baseline: the reference image (a value for every pixel, or a tensor).
        internal_batch_size: interpolated images per forward pass (default: up to
            :data:`IG_BATCH_ROWS`, and at least ``N``); the result does not depend on it.
    """
    from captum.attr import IntegratedGradients

    check_ig_steps(steps, "steps", ValueError)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
    targets = [int(t) for t in targets]
    if len(targets) != len(x):
        raise ValueError(f"{len(targets)} target(s) for {len(x)} image(s): give one class index per image")
    if internal_batch_size is None:
        internal_batch_size = max(len(x), min(len(x) * steps, IG_BATCH_ROWS))
    x = x.detach()
    x0 = float(baseline) if not isinstance(baseline, Tensor) else baseline.detach().to(x).expand_as(x)
    ig = IntegratedGradients(LogitsOnly(model).eval())
    attr = ig.attribute(
        x, baselines=x0, target=targets, n_steps=steps, method="riemann_middle", internal_batch_size=internal_batch_size
    )
    return attr.detach()


def ig_map(attributions: Tensor) -> np.ndarray:
    """A ``[0, 1]`` map per image from IG attributions: the absolute sum over channels, scaled to its max."""
    m = attributions.detach().abs().sum(dim=1).cpu().numpy().astype(np.float32)
    top = m.reshape(len(m), -1).max(axis=1)[:, None, None]
    return np.divide(m, top, out=np.zeros_like(m), where=top > 0)
