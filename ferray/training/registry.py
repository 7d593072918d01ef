"""Registries of what a config names: losses and LR schedules.

A registry maps a name to a factory. The built-in names are listed here, so validating a
config (``loss.name: focal``) never imports torch; their factories register themselves
when their module (``ferray.training.losses``, ``ferray.training.schedules``) is imported.
A name registered with :func:`ferray.training.register_loss` or ``register_schedule`` is
valid in YAML from then on: config validation asks the registry, not a fixed list.

>>> from ferray.training.registry import LOSS_REGISTRY
>>> LOSS_REGISTRY.check("focal")
'focal'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ferray.errors import closest

__all__ = ["Registry", "LOSS_REGISTRY", "SCHEDULE_REGISTRY"]


class Registry(dict):
    """``name -> factory``, with the built-in names known before their module is imported."""

    def __init__(self, kind: str, module: str, builtin: tuple[str, ...]) -> None:
        super().__init__()
        self.kind, self.module, self.builtin = kind, module, tuple(builtin)

    def names(self) -> list[str]:
        """Every valid name: the built-ins and whatever was registered."""
        return sorted(set(self.builtin) | set(self.keys()))

    def register(self, name: str) -> Callable[[Any], Any]:
        """A decorator registering a factory under ``name`` (refuses a name taken by another factory)."""

        def decorate(factory):
            if dict.get(self, name) not in (None, factory):
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = factory
            return factory

        return decorate

    def check(self, name: str) -> str:
        """``name`` when valid; else ``ValueError`` naming it, the nearest match and the valid names."""
        if name not in self.names():
            raise ValueError(
                f"unknown {self.kind} {name!r}{closest(name, self.names())}; registered "
                f"{self.kind} names: {', '.join(self.names())}"
            )
        return name

    def factory(self, name: str):
        """The factory of ``name`` (importing the built-ins' module first)."""
        importlib.import_module(self.module)
        self.check(name)
        return self[name]


LOSS_REGISTRY = Registry("loss", "ferray.training.losses", ("ce", "label_smoothing", "focal", "soft_ce"))
SCHEDULE_REGISTRY = Registry(
    "schedule", "ferray.training.schedules", ("cosine", "onecycle", "poly", "step", "constant")
)
