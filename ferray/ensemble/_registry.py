"""Ensemble methods by name: ``register_ensemble`` and ``make_ensemble`` (as timm's ``create_model``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ferray.errors import ConfigError, closest

__all__ = ["ENSEMBLE_METHODS", "register_ensemble", "make_ensemble"]

#: Registered ensemble methods: name -> estimator class.
ENSEMBLE_METHODS: dict[str, type] = {}

_T = TypeVar("_T", bound=type)


def register_ensemble(name: str) -> Callable[[_T], _T]:
    """Register an :class:`~ferray.ensemble.EnsembleMethod` subclass under ``name`` (a decorator).

    >>> from ferray.ensemble import MeanEnsemble
    >>> ENSEMBLE_METHODS["mean"] is MeanEnsemble
    True
    """

    def decorate(cls: _T) -> _T:
        if name in ENSEMBLE_METHODS:
            raise ValueError(f"ensemble method {name!r} is already registered ({ENSEMBLE_METHODS[name].__name__})")
        cls.name = name
        ENSEMBLE_METHODS[name] = cls
        return cls

    return decorate


def make_ensemble(name: str, **settings: Any):
    """An unfitted ensemble method by registry name, with ``settings`` passed to its ``__init__``.

    Raises:
        ConfigError: (a ``ValueError``) an unknown method, or a setting the method does not
            have; the message lists what is accepted.

    >>> make_ensemble("greedy", iterations=10)
    GreedyEnsemble(iterations=10)
    """
    cls = ENSEMBLE_METHODS.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown ensemble method {name!r}{closest(str(name), ENSEMBLE_METHODS)}; "
            f"valid methods: {', '.join(ENSEMBLE_METHODS)}"
        )
    accepted = cls._get_param_names()
    for key in settings:
        if key not in accepted:
            raise ConfigError(
                f"ensemble method {name!r} has no setting {key!r}{closest(key, accepted)}; "
                f"its settings: {', '.join(accepted) or 'none'}"
            )
    return cls(**settings)
