"""Package exports: one way for every ``ferray`` package ``__init__``.

ferray's packages re-export their public names from private modules, but importing a
package must stay cheap: ``ferray --help`` imports every command's module, a fold worker
imports ``ferray.data`` for one class, and a predict-only install has no torch at all.

The rule, for every ``ferray/**/__init__.py``, light packages (``ferray.metrics``,
``ferray.imaging``, ``ferray.run``) included:

* one ``_EXPORTS`` dict literal, ``public name -> module that defines it``, in the order the
  API page lists them (comments may group them): the package's curated public API, what a
  user imports, not every helper;
* ``__all__ = list(_EXPORTS)``, never written out by hand;
* ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``: a name's module is imported
  the first time the name is used;
* an ``if TYPE_CHECKING:`` block importing the same names from the same modules, for type
  checkers and for the API pages (griffe reads it to know what each name is; the docs hook
  ``docs/hooks/docstrings.py`` reads ``__all__`` from ``_EXPORTS``).

``tests/test_lazy.py`` checks that the three agree and that each module defines its names::

    from typing import TYPE_CHECKING

    from ferray._lazy import lazy_exports

    _EXPORTS = {
        "GreedyEnsemble": "ferray.ensemble._greedy",
        ...
    }

    __all__ = list(_EXPORTS)

    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

    if TYPE_CHECKING:
        from ferray.ensemble._greedy import GreedyEnsemble
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
