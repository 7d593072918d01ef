"""Hyperparameter search: typed search specs, the Optuna space, the Ray Tune sweep, status.

>>> from ferray.search import load_search_spec, packaged_spec
>>> spec = load_search_spec(packaged_spec("quickstart"))  # doctest: +SKIP
>>> result = run_search(spec, storage="runs")              # doctest: +SKIP
>>> get_status(result.run_dir)["best"]["params"]           # doctest: +SKIP
"""

from ferray.search._results import ResultsTable, read_results, write_table_atomic
from ferray.search._retention import RetentionReport, apply_retention, disk_usage
from ferray.search._space import apply_params, define_by_run, is_active
from ferray.search._spec import (
    PACKAGED_SPECS,
    BudgetConfig,
    DistillConfig,
    EnsembleConfig,
    GreedyConfig,
    ParamSpec,
    RetentionConfig,
    SearchConfig,
    SearchSpec,
    TrackingConfig,
    WandbConfig,
    check_greedy_pool,
    load_search_spec,
    packaged_spec,
)
from ferray.search._status import get_status, render_status

__all__ = [
    # specs
    "SearchSpec",
    "ParamSpec",
    "BudgetConfig",
    "SearchConfig",
    "TrackingConfig",
    "WandbConfig",
    "EnsembleConfig",
    "GreedyConfig",
    "check_greedy_pool",
    "DistillConfig",
    "RetentionConfig",
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
    # results and status
    "ResultsTable",
    "read_results",
    "write_table_atomic",
    "get_status",
    "render_status",
    # retention
    "apply_retention",
    "RetentionReport",
    "disk_usage",
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
