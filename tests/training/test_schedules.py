from __future__ import annotations

import pytest
import torch

from ferray.training import SCHEDULES, build_optimizer, build_scheduler
from ferray.training.config import OptimConfig, ScheduleConfig

LR = 0.1


def _lrs(cfg: ScheduleConfig, steps_per_epoch: int = 10, epochs: int = 5) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = build_scheduler(opt, cfg, steps_per_epoch, epochs)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps_per_epoch * epochs):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_all_schedules_registered() -> None:
    assert set(SCHEDULES) == {"cosine", "onecycle", "poly", "step", "constant"}


def test_warmup_ramps_linearly() -> None:
    lrs = _lrs(ScheduleConfig(name="constant", warmup_epochs=1))
    assert lrs[:10] == pytest.approx([LR * (i + 1) / 10 for i in range(10)])
    assert lrs[10:] == pytest.approx([LR] * 41)


def test_cosine_ends_at_min_lr_ratio() -> None:
    lrs = _lrs(ScheduleConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.05))
    assert max(lrs) == pytest.approx(LR)
    assert lrs[-1] == pytest.approx(0.05 * LR)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:]))  # decreasing after warm-up


def test_poly_ends_at_min_lr_ratio() -> None:
    lrs = _lrs(ScheduleConfig(name="poly", power=2.0, min_lr_ratio=0.0))
    assert lrs[0] == pytest.approx(LR) and lrs[-1] == pytest.approx(0.0)
    assert lrs[25] == pytest.approx(LR * 0.25)


def test_onecycle_peaks_after_warmup() -> None:
    lrs = _lrs(ScheduleConfig(name="onecycle", warmup_epochs=2, min_lr_ratio=0.01))
    assert lrs[0] == pytest.approx(LR / 25)
    assert max(lrs) == pytest.approx(LR) and lrs.index(max(lrs)) == 20
    assert lrs[-1] == pytest.approx(0.01 * LR)


def test_onecycle_without_warmup_peaks_at_30_percent() -> None:
    lrs = _lrs(ScheduleConfig(name="onecycle"))
    assert lrs.index(max(lrs)) == 15


def test_step_decays_every_step_epochs() -> None:
    lrs = _lrs(ScheduleConfig(name="step", step_epochs=2, step_gamma=0.5))
    assert lrs[0] == pytest.approx(LR) and lrs[19] == pytest.approx(LR)
    assert lrs[20] == pytest.approx(LR / 2) and lrs[40] == pytest.approx(LR / 4)


def test_state_dict_round_trip_continues_the_schedule() -> None:
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1)
    full = _lrs(cfg)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = build_scheduler(opt, cfg, 10, 5)
    for _ in range(17):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    opt2.load_state_dict(opt.state_dict())
    sched2 = build_scheduler(opt2, cfg, 10, 5)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(full[17])
    resumed = []
    for _ in range(50 - 17):
        opt2.step()
        sched2.step()
        resumed.append(opt2.param_groups[0]["lr"])
    assert resumed == pytest.approx(full[18:])


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_build_optimizer_has_no_decay_group(name: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.01, weight_decay=0.1))
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 0.1]
    assert type(opt).__name__ == {"adamw": "AdamW", "sgd": "SGD"}[name]
    if name == "sgd":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
