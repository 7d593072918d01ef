"""Hyperparameter search: the Optuna space, the Ray Tune sweep, resume, the packaged specs.

What a run *is* (its spec schema, layout, results, status, retention) lives below every
stage in :mod:`ferray.run`; this package runs the sweep that fills a run directory.
:func:`load_search_spec`, :class:`SearchSpec` and :class:`ParamSpec` are re-exported from
:mod:`ferray.run.spec` as the names a search user starts from.

>>> from ferray.search import load_search_spec, packaged_spec
>>> spec = load_search_spec(packaged_spec("quickstart"))  # doctest: +SKIP
>>> result = run_search(spec, storage="runs")              # doctest: +SKIP
>>> result.best["params"]                                  # doctest: +SKIP
"""

# Exports load on first use: the sweep imports Ray, and spec tooling (`ferray search --dry-run`,
# the CLI) must not pay for it.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    # specs
    "SearchSpec": "ferray.run.spec",
    "ParamSpec": "ferray.run.spec",
    "load_search_spec": "ferray.run.spec",
    "packaged_spec": "ferray.search._spec",
    "PACKAGED_SPECS": "ferray.search._spec",
    # space
    "define_by_run": "ferray.search._space",
    "is_active": "ferray.search._space",
    "apply_params": "ferray.search._space",
    # sweep
    "run_search": "ferray.search._run",
    "resume_search": "ferray.search._resume",
    "dry_run": "ferray.search._plan",
    "SearchResult": "ferray.search._run",
    "SearchInterrupted": "ferray.search._run",
    "plan_search_resources": "ferray.search._plan",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.run.spec import ParamSpec, SearchSpec, load_search_spec
    from ferray.search._plan import dry_run, plan_search_resources
    from ferray.search._resume import resume_search
    from ferray.search._run import SearchInterrupted, SearchResult, run_search
    from ferray.search._space import apply_params, define_by_run, is_active
    from ferray.search._spec import PACKAGED_SPECS, packaged_spec
