"""TrainStep: one optimiser step, as the fold trainer and the student both take it."""

import pytest
import torch
from torch import nn

from ferray.training._step import NonFiniteLossError, TrainStep
from ferray.training.ema import ModelEma


def tiny(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(32, 6)
    y = torch.randint(0, 3, (32,))
    return model, x, y


def grad_norm(model: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


def test_the_loss_goes_down_on_a_fixed_batch():
    model, x, y = tiny()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.2))
    losses = [step(lambda: nn.functional.cross_entropy(model(x), y)).item() for _ in range(20)]
    assert losses[-1] < 0.8 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_the_returned_loss_is_the_one_before_the_step_and_detached():
    model, x, y = tiny()
    before = nn.functional.cross_entropy(model(x), y).item()
    loss = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1))(
        lambda: nn.functional.cross_entropy(model(x), y)
    )
    assert loss.item() == pytest.approx(before) and not loss.requires_grad
    assert nn.functional.cross_entropy(model(x), y).item() < before


@pytest.mark.parametrize("clip", [0.05, 0.5])
def test_clipping_bounds_the_gradient_norm(clip):
    model, x, y = tiny()
    loss = lambda: 100.0 * nn.functional.cross_entropy(model(x), y)  # noqa: E731 - a large gradient
    unclipped = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.0))
    unclipped(loss)
    assert grad_norm(model) > clip
    TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.0), grad_clip=clip)(loss)
    assert grad_norm(model) == pytest.approx(clip, rel=1e-4)


def test_amp_is_off_on_cpu_by_default():
    model, x, y = tiny()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert not step.scaler.is_enabled()
    with step.autocast():
        assert model(x).dtype == torch.float32
    assert step(lambda: nn.functional.cross_entropy(model(x), y)).dtype == torch.float32


def test_the_schedule_and_the_ema_follow_every_step():
    model, x, y = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    ema = ModelEma(model, decay=0.5, warmup=False)
    step = TrainStep(model, opt, scheduler=sched, ema=ema)
    for _ in range(4):
        step(lambda: nn.functional.cross_entropy(model(x), y))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    assert ema.num_updates == 4
    assert not torch.equal(ema.module[0].weight, model[0].weight)


def test_a_non_finite_loss_names_the_trainer_and_leaves_the_weights_alone():
    model, x, y = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), name="fold 2")
    with pytest.raises(NonFiniteLossError, match=r"fold 2: training loss became nan at epoch 1, step 3 \(lr 0.1\)"):
        step(lambda: model(x).sum() * float("nan"), at="epoch 1, step 3")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
