"""Package exports that load on first use.

ferray's packages re-export their public names from private modules, but importing a
package must stay cheap: ``ferray --help`` imports every command's module, a fold worker
imports ``ferray.data`` for one class, and a predict-only install has no torch at all.
Each package lists ``name -> module`` and lets this module resolve a name when it is first
used::

    _EXPORTS = {"GreedyEnsemble": "ferray.ensemble._greedy", ...}
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: dict[str, str], *, before: Callable[[], None] | None = None
) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``exports[name]`` on first access.

    ``before`` runs once before the first export is resolved (e.g. to fill a registry).
    """
    done: list[bool] = []

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if before is not None and not done:
            before()
            done.append(True)
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
