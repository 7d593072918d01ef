from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ferray.errors import ConfigError
from ferray.training import FocalLoss, build_loss, soft_cross_entropy
from ferray.training.config import LossConfig
from ferray.training.losses import AULoss, au_pos_weight, balanced_alpha

C = 5


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, C, generator=g)
    labels = torch.randint(0, C, (6,), generator=g)
    return logits, labels, F.one_hot(labels, C).float()


def test_soft_ce_with_one_hot_equals_cross_entropy() -> None:
    logits, labels, onehot = _data()
    assert torch.allclose(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, labels))


@pytest.mark.parametrize("name", ["ce", "soft_ce"])
def test_registry_ce_losses_equal_cross_entropy(name: str) -> None:
    logits, labels, onehot = _data()
    loss = build_loss(LossConfig(name=name), C, np.ones(C), None, 1.0)
    value, parts = loss({"logits": logits}, onehot)
    assert torch.allclose(value, F.cross_entropy(logits, labels))
    assert parts == {"emotion": pytest.approx(float(value)), "au": 0.0}


def test_label_smoothing_value() -> None:
    logits, labels, onehot = _data()
    loss = build_loss(LossConfig(name="label_smoothing", label_smoothing=0.2), C, np.ones(C), None, 1.0)
    value, _ = loss({"logits": logits}, onehot)
    assert torch.allclose(value, F.cross_entropy(logits, labels, label_smoothing=0.2))
    # Uniform logits: the loss is log(C) whatever the smoothing.
    value, _ = loss({"logits": torch.zeros(2, C)}, onehot[:2])
    assert float(value) == pytest.approx(math.log(C))


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy() -> None:
    logits, labels, onehot = _data()
    ce = F.cross_entropy(logits, labels)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, labels), ce)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, onehot), ce)


def test_focal_down_weights_easy_examples_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    p = torch.softmax(logits, 1)[0, 0]
    expected = -((1 - p) ** 2) * torch.log(p)
    assert torch.allclose(FocalLoss(gamma=2.0)(logits, torch.tensor([0])), expected)
    alpha = torch.tensor([3.0, 1.0])
    assert torch.allclose(FocalLoss(gamma=2.0, alpha=alpha)(logits, torch.tensor([0])), 3 * expected)


def test_balanced_alpha_is_inverse_frequency_with_mean_one() -> None:
    alpha = balanced_alpha(np.array([10, 30, 0]))
    assert alpha.mean() == pytest.approx(1.0)
    assert alpha[0] / alpha[1] == pytest.approx(3.0)
    assert alpha[2] == pytest.approx(alpha[0])  # unseen class takes the rarest seen class's weight


def test_focal_balanced_from_config_uses_class_counts() -> None:
    loss = build_loss(LossConfig(name="focal", focal_gamma=0.0), 2, np.array([1, 3]), None, 1.0)
    logits = torch.zeros(1, 2)
    value, _ = loss({"logits": logits}, torch.tensor([[1.0, 0.0]]))
    assert float(value) == pytest.approx(1.5 * math.log(2))  # alpha = [1.5, 0.5]


def test_au_pos_weight_is_clipped_ratio() -> None:
    w = au_pos_weight(np.array([0.5, 0.2, 0.0, 0.9]))
    assert w.tolist() == pytest.approx([1.0, 4.0, 50.0, 1.0])


def test_au_loss_ignores_unknown_rows() -> None:
    au_logits = torch.randn(3, 18)
    aus = (torch.rand(3, 18) > 0.5).float()
    mask = torch.tensor([True, False, True])
    expected = F.binary_cross_entropy_with_logits(au_logits[mask], aus[mask])
    assert torch.allclose(AULoss()(au_logits, aus, mask), expected)
    # All rows unknown: zero, yet differentiable.
    logits = au_logits.clone().requires_grad_()
    value = AULoss()(logits, aus, torch.zeros(3, dtype=torch.bool))
    value.backward()
    assert float(value.detach()) == 0.0 and logits.grad is not None


def test_fer_loss_adds_weighted_au_loss() -> None:
    logits, _, onehot = _data()
    au_logits, aus = torch.randn(6, 18), (torch.rand(6, 18) > 0.5).float()
    loss = build_loss(LossConfig(name="ce", au_pos_weight=False), C, np.ones(C), np.full(18, 0.3), 0.5)
    total, parts = loss({"logits": logits, "au_logits": au_logits}, onehot, aus)
    assert parts["au"] == pytest.approx(float(F.binary_cross_entropy_with_logits(au_logits, aus)))
    assert float(total) == pytest.approx(parts["emotion"] + 0.5 * parts["au"], rel=1e-5)


def test_unknown_loss_name_lists_registered_losses() -> None:
    cfg = LossConfig.model_construct(**{**LossConfig().model_dump(), "name": "focall"})
    with pytest.raises(
        ConfigError, match="unknown loss 'focall'; did you mean 'focal'.*registered loss names: ce, focal"
    ):
        build_loss(cfg, C, np.ones(C), None, 1.0)
