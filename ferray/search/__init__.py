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

from ferray.run.spec import ParamSpec, SearchSpec, load_search_spec
from ferray.search._space import apply_params, define_by_run, is_active
from ferray.search._spec import PACKAGED_SPECS, packaged_spec

__all__ = [
    # specs
    "SearchSpec",
    "ParamSpec",
    "load_search_spec",
    "packaged_spec",
    "PACKAGED_SPECS",
    # space
    "define_by_run",
    "is_active",
    "apply_params",
    # sweep (imported lazily: they pull in Ray)
    "run_search",
    "resume_search",
    "dry_run",
    "SearchResult",
    "SearchInterrupted",
    "plan_search_resources",
]

_LAZY = {"run_search", "resume_search", "dry_run", "SearchResult", "SearchInterrupted", "plan_search_resources"}


def __getattr__(name: str):
    # The sweep module imports Ray; keep `import ferray.search` light for spec tooling.
    if name == "resume_search":
        from ferray.search import _resume

        return _resume.resume_search
    if name in _LAZY:
        from ferray.search import _run

        return getattr(_run, name)
    raise AttributeError(f"module 'ferray.search' has no attribute {name!r}")
