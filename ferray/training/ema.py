"""An exponential moving average of model weights, evaluated instead of the raw weights.

>>> import torch
>>> net = torch.nn.Linear(2, 2)
>>> ema = ModelEma(net, decay=0.9, warmup=False)
>>> ema.update(net)
>>> ema.num_updates
1
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma:
    """Keep ``ema = decay * ema + (1 - decay) * weights`` after each optimiser step.

    Args:
        model: the model to track; a deep copy in eval mode with gradients off is kept in
            :attr:`module` (use it for validation and export).
        decay: the EMA decay.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs
            (a few epochs per trial) are not dominated by the random initialisation.
        device: where to keep the copy (default: the model's device).

    Floating-point buffers (BatchNorm statistics) are averaged too; integer buffers are
    copied. DDP-wrapped models are unwrapped through ``.module``.
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.999, warmup: bool = True, device: torch.device | str | None = None
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay is {decay}, but must be in (0, 1)")
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        if device is not None:
            self.module.to(device)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        decay = self.current_decay()
        src = _unwrap(model).state_dict()
        floats_ema, floats_src = [], []
        for name, ema_t in self.module.state_dict().items():
            new = src[name].detach().to(ema_t.device)
            if ema_t.is_floating_point():
                floats_ema.append(ema_t)
                floats_src.append(new.to(ema_t.dtype))
            else:
                ema_t.copy_(new)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_src, 1.0 - decay)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count."""
        return {"module": self.module.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state.get("num_updates", 0))


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model
