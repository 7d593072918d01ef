"""One optimiser step, shared by every trainer (fold models and distilled students).

:class:`TrainStep` holds what a step touches (model, optimiser, schedule, AMP grad scaler,
gradient clipping, EMA) and runs it in one fixed order: forward and loss under autocast,
a finiteness check, zero the gradients, backward through the scaler, unscale and clip,
optimiser step, scaler update, schedule step, EMA update. The trainer decides what a batch
is and what its loss is; the step decides how that loss moves the weights.

>>> import torch
>>> net = torch.nn.Linear(2, 1)
>>> step = TrainStep(net, torch.optim.SGD(net.parameters(), lr=0.1), grad_clip=1.0)
>>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
>>> first = step(lambda: torch.nn.functional.mse_loss(net(x), y))
>>> bool(step(lambda: torch.nn.functional.mse_loss(net(x), y)) < first)
True
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from ferray.training.ema import ModelEma

__all__ = ["TrainStep", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainStep:
    """Moves ``model``'s weights by one optimiser step on the loss a closure computes.

    Args:
        model: the model being trained (its parameters are clipped).
        optimizer: the optimiser over ``model``'s parameters.
        scheduler: a per-step learning-rate schedule, stepped after the optimiser; optional.
        scaler: an AMP :class:`torch.amp.GradScaler` (fp16); ``None`` means a disabled one.
        ema: a :class:`~ferray.training.ema.ModelEma` updated after each step; optional.
        grad_clip: clip the gradients' global L2 norm to this value (after unscaling);
            ``None`` or 0 means no clipping.
        amp_dtype: autocast dtype for the forward pass (``torch.float16``/``bfloat16``);
            ``None`` runs in full precision.
        device_type: the device type autocast runs on (``"cuda"``, ``"cpu"``).
        name: what the error message names when the loss is not finite (``"fold 0"``).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        scaler: torch.amp.GradScaler | None = None,
        ema: ModelEma | None = None,
        grad_clip: float | None = None,
        amp_dtype: torch.dtype | None = None,
        device_type: str = "cpu",
        name: str = "model",
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.ema = model, optimizer, scheduler, ema
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(device_type, enabled=False)
        self.grad_clip = grad_clip
        self.amp_dtype, self.device_type = amp_dtype, device_type
        self.name = name

    def autocast(self) -> AbstractContextManager:
        """The mixed-precision context of the forward pass (a no-op without AMP)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def __call__(self, compute_loss: Callable[[], torch.Tensor], *, at: str = "") -> torch.Tensor:
        """Run ``compute_loss()`` (forward and loss) under autocast, then one optimiser step.

        Returns the (detached) loss before the step. Raises :class:`NonFiniteLossError`,
        naming :attr:`name`, ``at`` (e.g. ``"epoch 1, step 3"``) and the learning rate, when
        the loss is NaN or infinite; the weights are then left untouched.
        """
        with self.autocast():
            loss = compute_loss()
        if not torch.isfinite(loss):
            where = f" at {at}" if at else ""
            raise NonFiniteLossError(
                f"{self.name}: training loss became {loss.item()}{where} "
                f"(lr {self.optimizer.param_groups[0]['lr']:.3g}); "
                "lower the learning rate or enable optim.grad_clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach()
