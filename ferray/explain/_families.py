"""Where a CAM looks in each backbone family: target layers and reshape transforms.

A family is found from the backbone's timm class; it names its candidate target layers as
paths below ``FERModel.backbone`` (``"layer4[-1]"``), best first. The first candidate whose
output still has a spatial grid larger than 1x1 at the input's size is used: FER images are
small (48x48), and a stage that has pooled the face to one cell gives a constant map.

* ResNet ``layer4[-1]``; ConvNeXt ``stages[-1]``; EfficientNet ``conv_head``;
* MobileNetV3 ``blocks[-1]``: its ``conv_head`` runs after global pooling (1x1, all-zero maps);
* ViT: the last block's ``norm1``, tokens reshaped to the patch grid of the input's size
  after dropping the model's prefix (class, register) tokens;
* Swin: the last block's ``norm1``, whose ``(B, H, W, C)`` output is moved to ``(B, C, H, W)``.

:func:`register_family` adds a family (a timm class and its layer paths).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ferray.errors import ConfigError

__all__ = ["FAMILIES", "Family", "register_family", "family_of", "resolve_layer", "choose_target_layer", "TargetLayer"]


@dataclass(frozen=True)
class Family:
    """A backbone family: how to recognise it and where its CAM target layers are."""

    name: str
    classes: tuple[str, ...]  # "module:Class" of timm backbones that belong to it
    layers: tuple[str, ...]  # candidate target layer paths below the backbone, best first
    reshape: Callable[[nn.Module], Callable[[Tensor], Tensor] | None] | None = None
    note: str = field(default="", compare=False)


#: Registered families by name.
FAMILIES: dict[str, Family] = {}


def register_family(
    name: str,
    classes: Sequence[str],
    layers: Sequence[str],
    reshape: Callable[[nn.Module], Callable[[Tensor], Tensor] | None] | None = None,
    note: str = "",
) -> Family:
    """Register a family: timm backbone classes (``"timm.models.resnet:ResNet"``) and target layer paths.

    ``reshape(backbone)`` returns the transform of the target layer's output to ``(B, C, H, W)``
    (or None when it already is).
    """
    if not layers:
        raise ConfigError(f"family {name!r}: at least one target layer path is needed")
    fam = Family(name, tuple(classes), tuple(layers), reshape, note)
    FAMILIES[name] = fam
    return fam


def _class_of(spec: str) -> type | None:
    module, _, cls = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        return None


def family_of(model: nn.Module) -> Family | None:
    """The family of a :class:`~ferray.training.FERModel` (or a bare timm backbone), or None."""
    backbone = getattr(model, "backbone", model)
    for fam in FAMILIES.values():
        for spec in fam.classes:
            cls = _class_of(spec)
            if cls is not None and isinstance(backbone, cls):
                return fam
    return None


_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[-?\d+\])*)")


def resolve_layer(root: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` below ``root``: attribute names and ``[index]`` steps (``"blocks[-1].norm1"``).

    Raises:
        ConfigError: a step of the path does not exist (the message names it).
    """
    node = root
    for part in path.split("."):
        m = _STEP.fullmatch(part)
        if not m:
            raise ConfigError(f"target layer {path!r}: cannot parse {part!r}")
        name, indexes = m.group(1), m.group(2)
        if not hasattr(node, name):
            raise ConfigError(f"target layer {path!r}: {type(node).__name__} has no {name!r}")
        node = getattr(node, name)
        for idx in re.findall(r"-?\d+", indexes):
            try:
                node = node[int(idx)]
            except (IndexError, TypeError):
                raise ConfigError(f"target layer {path!r}: {name}[{idx}] does not exist") from None
    if not isinstance(node, nn.Module):
        raise ConfigError(f"target layer {path!r} is not a module")
    return node


@dataclass
class TargetLayer:
    """The layer a CAM reads, its path below the backbone, and the transform of its output."""

    module: nn.Module
    path: str
    reshape: Callable[[Tensor], Tensor] | None
    grid: tuple[int, int]
    note: str = ""


def _grid_of(output: Tensor, reshape: Callable[[Tensor], Tensor] | None) -> tuple[int, int]:
    t = reshape(output) if reshape is not None else output
    return (int(t.shape[-2]), int(t.shape[-1])) if t.ndim == 4 else (1, 1)


def choose_target_layer(model: nn.Module, input_shape: tuple[int, int, int], layer: str | None = None) -> TargetLayer:
    """The target layer for ``model`` on inputs of ``(C, H, W)``.

    ``layer`` forces a path below the backbone. Otherwise the family's first candidate whose
    output grid is larger than 1x1 at this input size (else its first candidate).

    Raises:
        ConfigError: no known family (the message names ``ig``, which works for any model), or
            a ``layer`` path that does not exist.
    """
    backbone = getattr(model, "backbone", model)
    fam = family_of(model)
    if layer is None and fam is None:
        known = ", ".join(FAMILIES)
        raise ConfigError(
            f"no CAM target layer is known for backbone {type(backbone).__name__} (families with "
            f"one: {known}); use method 'ig' (integrated gradients works for any model) or pass "
            "a target layer path, e.g. layer='stages[-1]'"
        )
    reshape = fam.reshape(backbone) if fam is not None and fam.reshape is not None else None
    if hasattr(reshape, "set_input"):
        reshape.set_input(input_shape[1], input_shape[2])
    paths = [layer] if layer is not None else list(fam.layers)
    modules = [resolve_layer(backbone, p) for p in paths]
    grids: list[tuple[int, int]] = []
    outputs: dict[int, Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: outputs.__setitem__(k, o)) for k, m in enumerate(modules)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    for k in range(len(modules)):
        o = outputs.get(k)
        grids.append(_grid_of(o, reshape) if isinstance(o, Tensor) else (1, 1))
    pick = next((k for k, g in enumerate(grids) if g[0] * g[1] > 1), 0)
    note = ""
    if pick > 0:
        note = (
            f"{paths[0]} is {grids[0][0]}x{grids[0][1]} at {input_shape[1]}x{input_shape[2]} input; "
            f"used {paths[pick]} ({grids[pick][0]}x{grids[pick][1]})"
        )
    elif grids[0][0] * grids[0][1] <= 1:
        note = f"{paths[0]} is 1x1 at {input_shape[1]}x{input_shape[2]} input: the map is constant"
    return TargetLayer(modules[pick], paths[pick], reshape, grids[pick], note)


# -- reshape transforms -----------------------------------------------------------------------------------------


class TokenGrid:
    """ViT tokens ``(B, prefix + h*w, C)`` -> ``(B, C, h, w)``.

    The grid follows the input: :meth:`set_input` is called with each input's ``(H, W)``
    and the patch size gives ``h, w``; a square grid of the tokens left after the prefix is
    the fallback when the patch size is unknown.
    """

    def __init__(self, num_prefix_tokens: int, patch_size: tuple[int, int] | None) -> None:
        self.prefix = int(num_prefix_tokens)
        self.patch = patch_size
        self.grid: tuple[int, int] | None = None

    def set_input(self, height: int, width: int) -> None:
        self.grid = (height // self.patch[0], width // self.patch[1]) if self.patch else None

    def __call__(self, tokens: Tensor) -> Tensor:
        if tokens.ndim == 4:
            return tokens
        b, n, c = tokens.shape
        patches = n - self.prefix
        grid = self.grid
        if grid is None or grid[0] * grid[1] != patches:
            side = math.isqrt(patches)
            if side * side != patches:
                raise ConfigError(
                    f"cannot lay {patches} ViT patch tokens on a grid (prefix {self.prefix}); use method 'ig'"
                )
            grid = (side, side)
        return tokens[:, self.prefix :, :].reshape(b, grid[0], grid[1], c).permute(0, 3, 1, 2)


def _vit_reshape(backbone: nn.Module) -> TokenGrid:
    patch = getattr(getattr(backbone, "patch_embed", None), "patch_size", None)
    prefix = getattr(backbone, "num_prefix_tokens", 1)
    return TokenGrid(prefix, tuple(patch) if patch is not None else None)


def _nhwc_to_nchw(t: Tensor) -> Tensor:
    """Swin's ``(B, H, W, C)`` (timm >= 0.9) or ``(B, H*W, C)`` tokens -> ``(B, C, H, W)``."""
    if t.ndim == 4:
        return t.permute(0, 3, 1, 2)
    b, n, c = t.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ConfigError(f"cannot lay {n} Swin tokens on a square grid; use method 'ig'")
    return t.reshape(b, side, side, c).permute(0, 3, 1, 2)


def _swin_reshape(backbone: nn.Module) -> Callable[[Tensor], Tensor]:
    return _nhwc_to_nchw


register_family("resnet", ["timm.models.resnet:ResNet"], ["layer4[-1]", "layer3[-1]"])
register_family("convnext", ["timm.models.convnext:ConvNeXt"], ["stages[-1]", "stages[-2]"])
register_family("efficientnet", ["timm.models.efficientnet:EfficientNet"], ["conv_head", "blocks[-1]"])
register_family(
    "mobilenetv3",
    ["timm.models.mobilenetv3:MobileNetV3"],
    ["blocks[-1]", "blocks[-2]"],
    note="conv_head runs after global pooling (1x1): its maps are all zero",
)
register_family("vit", ["timm.models.vision_transformer:VisionTransformer"], ["blocks[-1].norm1"], reshape=_vit_reshape)
register_family(
    "swin",
    ["timm.models.swin_transformer:SwinTransformer", "timm.models.swin_transformer_v2:SwinTransformerV2"],
    ["layers[-1].blocks[-1].norm1", "layers[-2].blocks[-1].norm1"],
    reshape=_swin_reshape,
)
