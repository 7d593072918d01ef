"""timm-style smoke tests: every advertised backbone family and every head x loss trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferray.training import (
    BACKBONE_FAMILIES,
    HEADS,
    LOSSES,
    NUM_AUS,
    MixupCutmix,
    build_loss,
    build_model,
    build_optimizer,
)
from ferray.training.config import LossConfig, ModelConfig, OptimConfig

NUM_CLASSES = 7
SIZE = 32


def _batch(in_chans: int, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_chans, SIZE, SIZE, generator=g)
    labels = torch.arange(n) % NUM_CLASSES
    target = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    aus = (torch.rand(n, NUM_AUS, generator=g) > 0.5).float()
    au_mask = torch.tensor([True] * (n - 1) + [False])
    return x, target, aus, au_mask


def _train_two_steps(model, loss_fn, in_chans, mixer=None):
    opt = build_optimizer(model, OptimConfig(lr=1e-3))
    model.train()
    for step in range(2):
        x, target, aus, au_mask = _batch(in_chans, seed=step)
        if mixer is not None:
            x, target, aus = mixer(x, target, aus)
            au_mask = mixer.mix_mask(au_mask)
        opt.zero_grad(set_to_none=True)
        loss, parts = loss_fn(model(x), target, aus, au_mask)
        assert torch.isfinite(loss), f"step {step}: loss {loss}"
        assert np.isfinite(parts["emotion"]) and np.isfinite(parts["au"])
        loss.backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None, f"step {step}: {name} got no gradient"
                assert torch.isfinite(p.grad).all(), f"step {step}: {name} has a non-finite gradient"
        opt.step()
    return model


def _loss(name: str, au_weight: float = 1.0):
    counts = np.array([5, 1, 2, 8, 3, 1, 4])
    return build_loss(LossConfig(name=name), NUM_CLASSES, counts, np.full(NUM_AUS, 0.2), au_weight)


FAMILY_CASES = [pytest.param(fam, c, id=f"{fam}-{c}ch") for fam in BACKBONE_FAMILIES for c in (1, 3)]


@pytest.mark.parametrize(("family", "in_chans"), FAMILY_CASES)
def test_family_trains(family: str, in_chans: int) -> None:
    tiny = BACKBONE_FAMILIES[family]["tiny"]
    cfg = ModelConfig(backbone=tiny["name"], backbone_kwargs=dict(tiny["kwargs"]), head="au_attention")
    model = build_model(cfg, NUM_CLASSES, in_chans=in_chans, img_size=SIZE)
    _train_two_steps(model, _loss("ce"), in_chans)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_head_and_loss_train(head: str, loss: str) -> None:
    model = build_model(ModelConfig(backbone="test_resnet", head=head), NUM_CLASSES, in_chans=1, img_size=SIZE)
    _train_two_steps(model, _loss(loss), 1)


@pytest.mark.parametrize("head", HEADS)
def test_trains_with_mixup_and_cutmix(head: str) -> None:
    model = build_model(ModelConfig(backbone="test_resnet", head=head), NUM_CLASSES, in_chans=3, img_size=SIZE)
    mixer = MixupCutmix(NUM_CLASSES, mixup_alpha=0.4, cutmix_alpha=1.0, generator=torch.Generator().manual_seed(0))
    _train_two_steps(model, _loss("focal"), 3, mixer)


@pytest.mark.parametrize(("head", "from_emotion"), [("multitask", False), ("au_attention", True)])
def test_au_head_learns_from_emotion_loss_only_with_attention(head: str, from_emotion: bool) -> None:
    model = build_model(ModelConfig(backbone="test_resnet", head=head), NUM_CLASSES, in_chans=1, img_size=SIZE)
    x, target, aus, au_mask = _batch(1)
    loss, parts = _loss("ce", au_weight=0.0)(model(x), target, aus, au_mask)
    loss.backward()
    assert parts["au"] == 0.0
    assert model.au_head.weight.grad is not None
    assert bool(model.au_head.weight.grad.abs().sum() > 0) is from_emotion
