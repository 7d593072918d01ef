"""Optimisers and per-step learning-rate schedules (a registry, picked by ``schedule.name``).

A schedule is a function ``step -> factor`` of the base learning rate, wrapped in a
:class:`torch.optim.lr_scheduler.LambdaLR` that is stepped once per optimiser step. Its
``state_dict`` holds the step count, so a scheduler rebuilt from the same config and
loaded from a checkpoint continues where it stopped.

All schedules share the linear warm-up from ``warmup_epochs`` (the factor rises from
``1 / warmup_steps`` to 1), except ``onecycle``, whose warm-up is its rising phase.

===========  ==========================================================================
name         factor after warm-up (``t`` runs from 0 to 1 over the remaining steps)
===========  ==========================================================================
cosine       ``m + (1 - m) (1 + cos(pi t)) / 2``, ending at ``m = min_lr_ratio``
onecycle     cosine rise from 1/25 to 1 over the warm-up (30% of steps if 0), then
             cosine decay to ``min_lr_ratio``
poly         ``m + (1 - m) (1 - t) ** power``
step         ``step_gamma ** (epoch // step_epochs)``
constant     1
===========  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ferray.errors import ConfigError, closest
from ferray.training.config import OptimConfig, ScheduleConfig
from ferray.training.models import param_groups
from ferray.training.registry import SCHEDULE_REGISTRY

__all__ = ["SCHEDULES", "register_schedule", "build_scheduler", "build_optimizer", "lr_factor"]

#: ``(cfg, total_steps, warmup_steps, steps_per_epoch) -> (step -> factor)``.
ScheduleFactory = Callable[[ScheduleConfig, int, int, int], Callable[[int], float]]
#: Registered schedules by name (the registry configs are validated against).
SCHEDULES = SCHEDULE_REGISTRY

_ONECYCLE_DIV = 25.0
_ONECYCLE_PCT = 0.3


def register_schedule(name: str) -> Callable[[ScheduleFactory], ScheduleFactory]:
    """Register a schedule factory under ``name`` (a decorator); ``optim.schedule.name: <name>``
    is then valid in any config validated afterwards."""
    return SCHEDULE_REGISTRY.register(name)


def _with_warmup(warmup: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return after(step)

    return factor


def _progress(step: int, start: int, total: int) -> float:
    return min(1.0, max(0.0, (step - start) / max(1, total - start)))


@register_schedule("cosine")
def _cosine(cfg: ScheduleConfig, total: int, warmup: int, steps_per_epoch: int) -> Callable[[int], float]:
    m = cfg.min_lr_ratio
    return _with_warmup(warmup, lambda s: m + (1 - m) * 0.5 * (1 + math.cos(math.pi * _progress(s, warmup, total))))


@register_schedule("poly")
def _poly(cfg: ScheduleConfig, total: int, warmup: int, steps_per_epoch: int) -> Callable[[int], float]:
    m = cfg.min_lr_ratio
    return _with_warmup(warmup, lambda s: m + (1 - m) * (1 - _progress(s, warmup, total)) ** cfg.power)


@register_schedule("step")
def _step(cfg: ScheduleConfig, total: int, warmup: int, steps_per_epoch: int) -> Callable[[int], float]:
    return _with_warmup(warmup, lambda s: cfg.step_gamma ** ((s // steps_per_epoch) // cfg.step_epochs))


@register_schedule("constant")
def _constant(cfg: ScheduleConfig, total: int, warmup: int, steps_per_epoch: int) -> Callable[[int], float]:
    return _with_warmup(warmup, lambda s: 1.0)


@register_schedule("onecycle")
def _onecycle(cfg: ScheduleConfig, total: int, warmup: int, steps_per_epoch: int) -> Callable[[int], float]:
    peak = warmup if warmup > 0 else max(1, int(round(_ONECYCLE_PCT * total)))
    start, m = 1.0 / _ONECYCLE_DIV, cfg.min_lr_ratio

    def factor(step: int) -> float:
        if step < peak:
            t = step / peak
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t))
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * _progress(step, peak, total)))

    return factor


def lr_factor(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The schedule's ``step -> factor`` function (what :func:`build_scheduler` wraps)."""
    try:
        factory = SCHEDULE_REGISTRY.factory(cfg.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if steps_per_epoch < 1 or epochs < 1:
        raise ConfigError(f"steps_per_epoch={steps_per_epoch} and epochs={epochs} must both be >= 1")
    total = steps_per_epoch * epochs
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)
    return factory(cfg, total, warmup, steps_per_epoch)


class StepScheduler(LambdaLR):
    """A :class:`LambdaLR` stepped per optimiser step whose ``load_state_dict`` also sets
    the optimiser's learning rates to the restored step, whatever the loading order."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        lrs = [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> LambdaLR:
    """A per-step scheduler: call ``scheduler.step()`` after every ``optimizer.step()``.

    After ``steps_per_epoch * epochs`` steps the cosine, poly and onecycle schedules reach
    ``min_lr_ratio * lr``. Rebuild it from the same config and ``load_state_dict`` to resume.
    """
    return StepScheduler(optimizer, lr_factor(cfg, steps_per_epoch, epochs))


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum, Nesterov) over :func:`~ferray.training.models.param_groups`.

    Norm weights, biases and the backbone's ``no_weight_decay`` parameters take no decay.
    """
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    raise ConfigError(f"unknown optimizer {cfg.name!r}{closest(cfg.name, ('adamw', 'sgd'))}; valid: adamw, sgd")
