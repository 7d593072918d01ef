from __future__ import annotations

import pytest
import torch

from ferray.errors import ConfigError
from ferray.training import BACKBONE_FAMILIES, build_model, check_backbone, load_pretrained, param_groups
from ferray.training.config import ModelConfig


def test_check_backbone_accepts_known_names_and_tags() -> None:
    assert check_backbone("resnet18") == "resnet18"
    assert check_backbone("resnet18.a1_in1k") == "resnet18.a1_in1k"


def test_check_backbone_lists_close_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet181'; did you mean .*'resnet18'"):
        check_backbone("resnet181")


def test_check_backbone_without_close_names_points_to_families() -> None:
    with pytest.raises(ConfigError, match="advertised families: convnext"):
        check_backbone("qqqqqqqqqqqq")


def test_family_examples_are_real_timm_names() -> None:
    for family, spec in BACKBONE_FAMILIES.items():
        for name in [*spec["examples"], spec["tiny"]["name"]]:
            assert check_backbone(name) == name, family


def test_bad_backbone_kwargs_name_the_backbone() -> None:
    cfg = ModelConfig(backbone="test_resnet", backbone_kwargs={"not_an_arg": 1})
    with pytest.raises(ConfigError, match="model.backbone 'test_resnet' rejected its arguments"):
        build_model(cfg, 7, in_chans=1)


@pytest.mark.parametrize("size", [48, 64, 112])
@pytest.mark.parametrize("family", ["vit", "swin"])
def test_fixed_size_backbones_build_at_small_sizes(family: str, size: int) -> None:
    tiny = BACKBONE_FAMILIES[family]["tiny"]
    cfg = ModelConfig(backbone=tiny["name"], backbone_kwargs=dict(tiny["kwargs"]))
    model = build_model(cfg, 7, in_chans=1, img_size=size).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, size, size))
    assert out["logits"].shape == (1, 7)
    assert out["features"].shape == (1, model.num_features)


def test_emotion_head_returns_no_au_logits() -> None:
    model = build_model(ModelConfig(backbone="test_resnet"), 5, in_chans=3).eval()
    out = model(torch.zeros(2, 3, 32, 32))
    assert set(out) == {"logits", "features"}
    assert not model.predicts_aus


def test_pretrained_from_local_file_restores_weights(tmp_path) -> None:
    cfg = ModelConfig(backbone="test_resnet", head="multitask")
    torch.manual_seed(0)
    source = build_model(cfg, 7, in_chans=3)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    loaded = build_model(cfg.model_copy(update={"pretrained": str(path)}), 7, in_chans=3)
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_pretrained_safetensors_backbone_adapted_to_grayscale(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = build_model(ModelConfig(backbone="test_resnet"), 7, in_chans=3)
    # A plain timm checkpoint: no "backbone." prefix, with a classifier to drop.
    state = {k.removeprefix("backbone."): v for k, v in rgb.state_dict().items() if k.startswith("backbone.")}
    state["fc.weight"] = torch.zeros(1000, rgb.num_features)
    path = tmp_path / "timm.safetensors"
    save_file(state, str(path))
    gray = build_model(ModelConfig(backbone="test_resnet"), 7, in_chans=1)
    report = load_pretrained(gray, path)
    assert "fc.weight" in " ".join(report.dropped)
    assert len(report.adapted) == 1 and "3, 3, 3) -> (" in report.adapted[0], report.adapted
    stem = next(k for k in report.adapted).split(" ")[0]
    assert torch.allclose(gray.state_dict()[stem], rgb.state_dict()[stem].sum(dim=1, keepdim=True))
    # A grey image through the grayscale stem equals the same grey image through the RGB stem.
    gray.eval(), rgb.eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gray(x)["features"], rgb(x.expand(1, 3, 32, 32))["features"], atol=1e-5)


def test_missing_pretrained_file_is_a_config_error(tmp_path) -> None:
    cfg = ModelConfig.model_construct(**{**ModelConfig().model_dump(), "pretrained": str(tmp_path / "x.pth")})
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(cfg, 7, in_chans=1)


def test_param_groups_exclude_norms_and_biases() -> None:
    model = build_model(ModelConfig(backbone="test_vit"), 7, in_chans=1, img_size=32)
    groups = param_groups(model, 0.05)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decay}
    assert "emotion_head.weight" in names
    assert not any(n.endswith(".bias") or "norm" in n or "pos_embed" in n for n in names)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
