from __future__ import annotations

import torch
from torch import nn

from ferray.training import build_model, count_macs, count_params, measure_cost, measure_latency
from ferray.training.config import ModelConfig


def _tiny() -> nn.Module:
    # conv 1->4, 3x3, stride 1, padding 1 on 8x8; global pool; linear 4->3
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding=1, bias=True),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def test_params_are_exact_for_a_known_model() -> None:
    # conv: 4 * 1 * 3 * 3 weights + 4 biases; linear: 4 * 3 weights + 3 biases
    assert count_params(_tiny()) == 36 + 4 + 12 + 3
    assert count_params([_tiny(), _tiny()]) == 2 * 55


def test_macs_are_exact_for_a_known_conv_and_linear() -> None:
    # conv: 4 x 8 x 8 outputs x (1 x 3 x 3) each; linear: 3 outputs x 4 inputs
    assert count_macs(_tiny(), (1, 8, 8)) == 4 * 8 * 8 * 9 + 3 * 4


def test_macs_of_a_grouped_strided_conv() -> None:
    conv = nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1, groups=2, bias=False)
    # 8 x 4 x 4 outputs, each 4 / 2 input channels x 9 kernel taps
    assert count_macs(conv, (4, 8, 8)) == 8 * 4 * 4 * 2 * 9


def test_macs_leave_no_hook_and_the_mode_unchanged() -> None:
    model = _tiny().train()
    count_macs(model, (1, 8, 8))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert count_macs(model, (1, 8, 8)) == count_macs(model, (1, 8, 8))


def test_latency_is_positive_and_leaves_the_model_and_rng_alone() -> None:
    model = _tiny().train()
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    ms = measure_latency(model, (1, 8, 8), 4, warmup=1, min_repeats=3, max_repeats=3, min_seconds=0)
    assert ms > 0
    assert model.training
    assert torch.equal(torch.rand(1), expected)  # the global generator drew nothing


def test_measure_cost_on_a_real_backbone() -> None:
    model = build_model(ModelConfig(backbone="test_resnet", pretrained=False), num_classes=7, in_chans=1, img_size=32)
    cost = measure_cost(model, (1, 32, 32))
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    assert cost["macs"] > 0 and cost["macs"] == count_macs(model, (1, 32, 32))
    assert cost["latency_ms"] > 0 and cost["latency_ms_b64"] > 0
    assert cost["latency_threads"] == torch.get_num_threads()
    assert set(measure_cost(model, (1, 32, 32), latency=False)) == {"params", "macs"}


def test_measuring_a_fold_model_leaves_its_training_unchanged():
    """The fold worker measures the fresh model before its first epoch: the epoch trains as without it."""
    from ferray.data import generate, plan_folds
    from ferray.training._fold import FoldTrainer
    from ferray.training._worker import _trial_cost
    from ferray.training.config import TrainConfig

    data = generate(count=64, size=48, seed=0)
    plan = plan_folds(data, 2, seed=0)
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": "test_resnet", "pretrained": False, "drop_rate": 0.2},
            "run": {"epochs": 1, "batch_size": 16, "amp": "off"},
            "optim": {"ema_decay": 0.9},
        }
    )

    def trained(measure: bool) -> dict:
        torch.manual_seed(0)
        trainer = FoldTrainer(cfg, data, plan.train_index(0), plan.val_index(0), fold=0, device="cpu")
        cost = _trial_cost(trainer, latency=True) if measure else {}
        trainer.train_epoch(0)
        return {"cost": cost, "state": trainer.state_dict()["model"]}

    measured, plain = trained(True), trained(False)
    assert measured["cost"]["latency_ms"] > 0 and measured["cost"]["params"] > 0
    assert all(torch.equal(measured["state"][k], plain["state"][k]) for k in plain["state"])
