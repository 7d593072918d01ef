"""CAM maps for every advertised backbone family and method; target layers; integrated gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferray.errors import ConfigError
from ferray.explain import CAM_METHODS, METHODS, CAMExplainer, choose_target_layer, ig_map, integrated_gradients
from ferray.training.config import ModelConfig
from ferray.training.models import BACKBONE_FAMILIES, build_model

EXPECTED_LAYER = {  # at 48x48
    "resnet": "layer4[-1]",
    "convnext": "stages[-2]",  # stages[-1] pools a 48x48 face to 1x1: the previous stage is used
    "efficientnet": "conv_head",
    "mobilenetv3": "blocks[-1]",  # not conv_head: it runs after global pooling
    "vit": "blocks[-1].norm1",
    "swin": "layers[-1].blocks[-1].norm1",
}

_MODELS: dict = {}


def tiny(family: str, size: int = 48, **kwargs):
    key = (family, size, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        spec = BACKBONE_FAMILIES[family]["tiny"]
        torch.manual_seed(0)
        cfg = ModelConfig(backbone=spec["name"], pretrained=False, backbone_kwargs={**spec["kwargs"], **kwargs})
        _MODELS[key] = build_model(cfg, num_classes=4, in_chans=1, img_size=size).eval()
    return _MODELS[key]


def _x(n: int = 1, size: int = 48) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))


def test_every_advertised_family_has_an_expected_layer():
    assert set(EXPECTED_LAYER) == set(BACKBONE_FAMILIES)


@pytest.mark.parametrize("family", sorted(BACKBONE_FAMILIES))
@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_method_gives_a_map_of_the_input_size_for_every_family(family, method):
    cam = CAMExplainer(tiny(family), method)
    maps = cam(_x(), targets=[2])
    assert maps.shape == (1, 48, 48)
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps.max() > 0.0, "an all-zero map: the target layer has no spatial grid"
    assert cam.target_layer_.path == EXPECTED_LAYER[family]


def test_gradcam_maps_depend_on_the_target_class():
    cam = CAMExplainer(tiny("resnet"), "gradcam")
    a, b = cam(_x(), targets=[0]), cam(_x(), targets=[3])
    assert not np.allclose(a, b)


def test_default_target_is_the_predicted_class():
    model = tiny("resnet")
    x = _x(2)
    with torch.no_grad():
        pred = model(x)["logits"].argmax(1).tolist()
    cam = CAMExplainer(model, "gradcam")
    np.testing.assert_allclose(cam(x), cam(x, targets=pred), atol=1e-6)


def test_convnext_uses_its_last_stage_when_the_image_is_large_enough():
    layer = choose_target_layer(tiny("convnext", size=96), (1, 96, 96))
    assert layer.path == "stages[-1]" and layer.grid == (3, 3) and layer.note == ""
    small = choose_target_layer(tiny("convnext"), (1, 48, 48))
    assert small.path == "stages[-2]" and "1x1" in small.note


def test_vit_grid_follows_the_image_size_and_the_prefix_tokens():
    model = tiny("vit", size=64, reg_tokens=2)
    assert model.backbone.num_prefix_tokens == 3  # class token + 2 register tokens
    cam = CAMExplainer(model, "gradcam")
    maps = cam(_x(1, 64), targets=[1])
    assert maps.shape == (1, 64, 64)
    assert cam.target_layer_.grid == (4, 4)  # 64 / patch 16


def test_explicit_layer_and_a_bad_path():
    cam = CAMExplainer(tiny("resnet"), "gradcam", layer="layer3[-1]")
    assert cam(_x(), targets=[0]).shape == (1, 48, 48)
    assert cam.target_layer_.path == "layer3[-1]" and cam.target_layer_.grid == (3, 3)
    with pytest.raises(ConfigError, match="has no 'layer9'"):
        CAMExplainer(tiny("resnet"), "gradcam", layer="layer9[-1]")(_x(), targets=[0])


def test_a_family_without_a_known_layer_names_a_method_that_works():
    model = build_model(ModelConfig(backbone="test_byobnet"), num_classes=4, in_chans=1, img_size=48)
    with pytest.raises(ConfigError, match="no CAM target layer is known for backbone ByobNet.*use method 'ig'"):
        CAMExplainer(model, "gradcam")(_x(), targets=[0])
    attr = integrated_gradients(model, _x(), [0], steps=4)
    assert ig_map(attr).shape == (1, 48, 48)


@pytest.mark.parametrize("method", ["grad-cam", "GradCAM", "cam"])
def test_unknown_method_lists_the_valid_ones(method):
    with pytest.raises(ConfigError, match=r"unknown explain method .*\(valid methods: gradcam, gradcam\+\+, scorecam"):
        CAMExplainer(tiny("resnet"), method)


def test_ig_is_not_a_cam():
    with pytest.raises(ConfigError, match="integrated_gradients"):
        CAMExplainer(tiny("resnet"), "ig")


@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_integrated_gradients_completeness(family):
    """The attributions of an image sum to f(x) - f(baseline) (midpoint rule, 64 steps)."""
    model = tiny(family)
    x = _x(2)
    attr = integrated_gradients(model, x, [1, 3], steps=64)
    with torch.no_grad():
        fx = model(x)["logits"][[0, 1], [1, 3]]
        f0 = model(torch.full_like(x, -1.0))["logits"][[0, 1], [1, 3]]
    np.testing.assert_allclose(attr.sum(dim=(1, 2, 3)).numpy(), (fx - f0).numpy(), rtol=0.02, atol=2e-3)
    m = ig_map(attr)
    assert m.shape == (2, 48, 48) and m.min() >= 0 and np.allclose(m.reshape(2, -1).max(1), 1.0)


@pytest.mark.parametrize("family", sorted(BACKBONE_FAMILIES))
def test_integrated_gradients_give_a_map_of_the_input_size_for_every_family(family):
    attr = integrated_gradients(tiny(family), _x(2), [2, 0], steps=4)
    assert attr.shape == (2, 1, 48, 48) and torch.isfinite(attr).all()
    m = ig_map(attr)
    assert m.shape == (2, 48, 48) and m.dtype == np.float32
    assert m.min() >= 0.0 and np.allclose(m.reshape(2, -1).max(1), 1.0)


def _midpoint_ig(model, x, targets, steps, x0):
    """The midpoint Riemann sum written out, one forward and backward pass per step."""
    idx = torch.as_tensor(targets)[:, None]
    total = torch.zeros_like(x)
    for k in range(steps):
        xi = (x0 + (k + 0.5) / steps * (x - x0)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xi)["logits"].gather(1, idx).sum(), xi)
        total += grad
    return (x - x0) * total / steps


@pytest.mark.parametrize("baseline", [-1.0, 0.25, "tensor"])
def test_integrated_gradients_keep_the_baseline_and_the_steps(baseline):
    model = tiny("resnet")
    x = _x(3)
    x0 = torch.linspace(-1, 1, 48 * 48).reshape(1, 1, 48, 48) if baseline == "tensor" else baseline
    # 4 steps: the midpoints 1/8, 3/8, ... are exact in float32, so both sums see the same images
    expected = _midpoint_ig(model, x, [0, 1, 3], 4, x0 if baseline == "tensor" else torch.full_like(x, x0))
    for rows in (None, 3, 7):  # how many interpolated images go through one pass does not matter
        attr = integrated_gradients(model, x, [0, 1, 3], steps=4, baseline=x0, internal_batch_size=rows)
        # float32 sums in another order: compared on the attributions' scale
        torch.testing.assert_close(attr, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_integrated_gradients_need_one_target_per_image():
    with pytest.raises(ValueError, match="1 target.* for 2 image"):
        integrated_gradients(tiny("resnet"), _x(2), [1], steps=2)
    with pytest.raises(ValueError, match="steps is 1, but must be an integer >= 2"):
        integrated_gradients(tiny("resnet"), _x(1), [1], steps=1)


def test_cli_method_choices_match_the_library():
    from ferray.explain._cli import _METHODS

    assert tuple(_METHODS) == METHODS
