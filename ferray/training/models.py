"""FER models: a timm backbone with an emotion head and optional action-unit heads.

Backbones are any timm model name (timm's registry is ferray's backbone registry); ferray
adds the heads. :data:`BACKBONE_FAMILIES` lists the families ferray advertises and tests
end to end, each with example names and a tiny variant that builds in milliseconds.

>>> from ferray.training.config import ModelConfig
>>> model = build_model(ModelConfig(backbone="test_resnet", head="multitask"), num_classes=7, in_chans=1)
>>> import torch
>>> out = model(torch.zeros(2, 1, 48, 48))
>>> out["logits"].shape, out["au_logits"].shape
(torch.Size([2, 7]), torch.Size([2, 18]))
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ferray.errors import ConfigError, closest
from ferray.training.config import ModelConfig


def _import_timm():
    """``import timm``, without the optional ``import wandb`` timm runs on the way.

    ``timm.utils.summary`` imports wandb when it is installed, only for a logging helper
    ferray never calls; in a fold worker that cost 0.3 s and wandb's threads on every start.
    A ``None`` entry in ``sys.modules`` makes that one import fail as if wandb were absent,
    and is removed again, so a later ``import wandb`` (W&B tracking) works as usual.
    """
    if "timm" in sys.modules or "wandb" in sys.modules:
        import timm

        return timm
    sys.modules["wandb"] = None  # type: ignore[assignment]
    try:
        import timm
    finally:
        if "wandb" in sys.modules and sys.modules["wandb"] is None:
            del sys.modules["wandb"]
    return timm


timm = _import_timm()

__all__ = [
    "BACKBONE_FAMILIES",
    "HEADS",
    "NUM_AUS",
    "FERModel",
    "LoadReport",
    "build_model",
    "check_backbone",
    "load_pretrained",
    "param_groups",
]

logger = logging.getLogger(__name__)

#: Length of the AU vectors the multi-task heads predict (``ferray.data.AU_IDS``).
NUM_AUS = 18
#: Head types accepted by :class:`FERModel` (``ModelConfig.head``).
HEADS: tuple[str, ...] = ("emotion", "multitask", "au_attention")

#: Backbone families ferray advertises. ``examples`` are real timm names for users;
#: ``tiny`` is a timm name plus ``backbone_kwargs`` that builds a small model fast (tests).
BACKBONE_FAMILIES: dict[str, dict[str, Any]] = {
    "convnext": {
        "examples": ["convnext_atto", "convnext_nano", "convnext_tiny", "convnext_small"],
        "tiny": {"name": "test_convnext", "kwargs": {}},
    },
    "swin": {
        "examples": ["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swinv2_tiny_window8_256"],
        "tiny": {
            "name": "swin_tiny_patch4_window7_224",
            "kwargs": {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2)},
        },
    },
    "efficientnet": {
        "examples": ["efficientnet_b0", "efficientnet_b2", "tf_efficientnetv2_s"],
        "tiny": {"name": "test_efficientnet", "kwargs": {}},
    },
    "mobilenetv3": {
        "examples": ["mobilenetv3_small_100", "mobilenetv3_large_100", "mobilenetv3_small_050"],
        "tiny": {"name": "mobilenetv3_small_050", "kwargs": {}},
    },
    "resnet": {
        "examples": ["resnet18", "resnet34", "resnet50", "resnet10t"],
        "tiny": {"name": "test_resnet", "kwargs": {}},
    },
    "vit": {
        "examples": ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"],
        "tiny": {"name": "test_vit", "kwargs": {}},
    },
}

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def check_backbone(name: str) -> str:
    """Return ``name`` if timm knows it, else raise :class:`ConfigError` naming close matches.

    A pretrained tag (``"resnet18.a1_in1k"``) is accepted when its architecture is known.
    No model is built, so this is cheap enough for config validation.

    >>> check_backbone("resnet18")
    'resnet18'
    """
    arch = name.split(".", 1)[0]
    if timm.is_model(arch) or timm.is_model(name):
        return name
    hint = closest(arch, timm.list_models())
    if not hint:
        families = ", ".join(f"{fam} ({BACKBONE_FAMILIES[fam]['examples'][0]})" for fam in BACKBONE_FAMILIES)
        hint = f"; see timm.list_models() for all names; advertised families: {families}"
    raise ConfigError(f"unknown backbone {name!r}{hint}")


class FERModel(nn.Module):
    """A pooled timm backbone followed by an emotion head and, optionally, AU heads.

    Heads (``head``):

    * ``"emotion"``: ``logits = Linear(features)``.
    * ``"multitask"``: the emotion head plus ``au_logits = Linear(features)`` (18 AUs,
      trained with a sigmoid/BCE loss).
    * ``"au_attention"``: as ``multitask``, and the predicted AU probabilities are projected
      to a feature-wise gate ``sigmoid(Linear(sigmoid(au_logits)))``; the emotion head sees
      ``features * gate``, so the AU head learns from both the AU loss and the emotion loss.

    ``forward`` returns a dict: ``"logits"`` ``(B, num_classes)``, ``"features"`` (pooled,
    ungated) ``(B, num_features)``, and for AU heads ``"au_logits"`` ``(B, 18)``;
    ``au_attention`` also returns the ``"gate"`` ``(B, num_features)``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "emotion") -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"unknown head {head!r}{closest(head, HEADS)}; valid heads: {', '.join(HEADS)}")
        if num_classes < 2:
            raise ConfigError(f"num_classes is {num_classes}, but must be >= 2")
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        # timm: ``head_hidden_size`` is the pooled width when a pre-logits layer exists
        # (MobileNetV3's conv_head), ``num_features`` otherwise.
        self.num_features = int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)
        self.emotion_head = nn.Linear(self.num_features, num_classes)
        self.au_head = nn.Linear(self.num_features, NUM_AUS) if head != "emotion" else None
        self.au_gate = nn.Linear(NUM_AUS, self.num_features) if head == "au_attention" else None

    @property
    def predicts_aus(self) -> bool:
        """Whether ``forward`` returns ``"au_logits"``."""
        return self.au_head is not None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(x)
        out = {"features": features}
        if self.au_head is None:
            out["logits"] = self.emotion_head(features)
            return out
        au_logits = self.au_head(features)
        out["au_logits"] = au_logits
        if self.au_gate is not None:
            gate = torch.sigmoid(self.au_gate(torch.sigmoid(au_logits)))
            out["gate"] = gate
            out["logits"] = self.emotion_head(features * gate)
        else:
            out["logits"] = self.emotion_head(features)
        return out

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names that take no weight decay (the backbone's position embeddings etc.)."""
        inner = getattr(self.backbone, "no_weight_decay", None)
        names = inner() if callable(inner) else ()
        return {f"backbone.{n}" for n in names}


def _create_backbone(cfg: ModelConfig, in_chans: int, img_size: int | None, pretrained: bool | str) -> nn.Module:
    name = cfg.backbone
    if isinstance(pretrained, str):
        # A hub tag selects timm's pretrained weights ``arch.tag`` (a full ``arch.tag`` also works).
        arch = name.split(".", 1)[0]
        name = pretrained if pretrained.startswith(f"{arch}.") else f"{arch}.{pretrained}"
    kwargs: dict[str, Any] = {
        "pretrained": bool(pretrained),
        "num_classes": 0,
        "in_chans": in_chans,
        "drop_rate": cfg.drop_rate,
        "drop_path_rate": cfg.drop_path_rate,
        **cfg.backbone_kwargs,
    }
    if img_size is not None and "img_size" not in cfg.backbone_kwargs:
        # ViT/Swin-style models fix their input size at construction; CNNs reject the keyword.
        try:
            return timm.create_model(name, img_size=img_size, **kwargs)
        except TypeError as err:
            if "img_size" not in str(err):
                raise _kwargs_error(cfg, err) from err
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as err:
        raise _kwargs_error(cfg, err) from err


def _kwargs_error(cfg: ModelConfig, err: Exception) -> ConfigError:
    return ConfigError(
        f"model.backbone {cfg.backbone!r} rejected its arguments (backbone_kwargs={cfg.backbone_kwargs!r}): {err}"
    )


def build_model(cfg: ModelConfig, num_classes: int, in_chans: int, img_size: int | None = None) -> FERModel:
    """Build a :class:`FERModel` from ``cfg``.

    Args:
        cfg: backbone name, pretrained source, dropout rates, head and ``backbone_kwargs``.
        num_classes: emotion classes.
        in_chans: 1 (grayscale) or 3 (RGB).
        img_size: the square training size; passed to backbones whose constructor takes
            ``img_size`` (ViT, Swin; Swin shrinks its windows to small patch grids itself).

    ``cfg.pretrained``: ``False`` gives random weights; a local file (``.pth``/``.pt``/
    ``.bin``/``.safetensors``, a timm backbone or a ferray checkpoint) is loaded with
    :func:`load_pretrained`; ``True`` or a hub tag (``"a1_in1k"``) asks timm for its
    pretrained weights, which needs network access or a populated Hugging Face cache.
    """
    check_backbone(cfg.backbone)
    pretrained = cfg.pretrained
    weights_file: Path | None = None
    if isinstance(pretrained, str):
        path = Path(pretrained).expanduser()
        if path.is_file():
            weights_file = path
        elif os.sep in pretrained or pretrained.endswith(_WEIGHT_SUFFIXES):
            raise ConfigError(f"model.pretrained: weights file {pretrained!r} does not exist")
        elif pretrained.lower() in ("", "false", "none"):
            pretrained = False
        elif pretrained.lower() == "true":
            pretrained = True
    backbone = _create_backbone(cfg, in_chans, img_size, False if weights_file else pretrained)
    model = FERModel(backbone, num_classes=num_classes, head=cfg.head)
    if weights_file is not None:
        report = load_pretrained(model, weights_file)
        logger.info("%s", report)
    return model


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each checkpoint tensor."""

    path: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        if self.adapted:
            lines.append(f"  adapted: {', '.join(self.adapted)}")
        if self.dropped:
            lines.append("  dropped: " + ", ".join(f"{k} ({why})" for k, why in self.dropped.items()))
        if self.missing:
            lines.append(f"  left at initialisation: {', '.join(self.missing)}")
        return "\n".join(lines)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module", "state_dict_ema", "model_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"model.pretrained: {str(path)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(model: FERModel, path: str | os.PathLike) -> LoadReport:
    """Load weights from a local file into ``model`` and report what was loaded.

    ``path`` may hold a ferray :class:`FERModel` state dict (keys ``backbone.*`` and heads)
    or a plain timm backbone state dict. Classifier tensors and tensors whose shapes do not
    match are dropped; input convolutions are adapted to the model's channel count like
    timm's ``adapt_input_conv`` (RGB weights summed for grayscale); absolute position
    embeddings are resampled to the model's patch grid.
    """
    path = Path(path).expanduser()
    state = _read_state_dict(path)
    if not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}
    own = model.state_dict()
    report = LoadReport(path=str(path))
    accepted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.dropped[key] = "not in model (classifier or other head)"
            continue
        target = own[key]
        if value.shape != target.shape:
            adapted = _adapt(model, key, value, target)
            if adapted is None:
                report.dropped[key] = f"shape {tuple(value.shape)} != {tuple(target.shape)}"
                continue
            report.adapted.append(f"{key} {tuple(value.shape)} -> {tuple(target.shape)}")
            value = adapted
        accepted[key] = value.to(target.dtype)
        report.loaded.append(key)
    report.missing = [k for k in own if k not in accepted]
    model.load_state_dict(accepted, strict=False)
    return report


def _adapt(model: FERModel, key: str, value: Tensor, target: Tensor) -> Tensor | None:
    if value.ndim == 4 and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
        from timm.models import adapt_input_conv

        try:
            return adapt_input_conv(target.shape[1], value, base_chans=value.shape[1])
        except (NotImplementedError, AssertionError, ValueError):
            return None
    if key.endswith("pos_embed") and value.ndim == 3 and value.shape[-1] == target.shape[-1]:
        from timm.layers import resample_abs_pos_embed

        grid = getattr(getattr(model.backbone, "patch_embed", None), "grid_size", None)
        prefix = (
            0
            if getattr(model.backbone, "no_embed_class", False)
            else int(getattr(model.backbone, "num_prefix_tokens", 1))
        )
        if grid is not None:
            try:
                return resample_abs_pos_embed(value, list(grid), num_prefix_tokens=prefix)
            except Exception:  # noqa: BLE001 - an unusual layout: fall back to dropping it
                return None
    return None


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into a decayed group and a no-decay group (norms, biases, embeddings).

    Follows timm's ``param_groups_weight_decay``: 1-d parameters (norm weights, biases) and
    names from ``model.no_weight_decay()`` get ``weight_decay=0``.
    """
    from timm.optim import param_groups_weight_decay

    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
