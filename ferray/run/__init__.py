"""What a run is: the layer every stage reads, below them all.

A sweep's run directory is the contract between the stages. This package says what it holds
and how to read it, and imports no stage (and neither torch nor Ray):

* :mod:`ferray.run.layout`: every file name of a run, a trial, the ensemble, the student,
  the bundle and the report (:class:`RunLayout`, :class:`TrialLayout`, ...);
* :mod:`ferray.run.spec` and :mod:`ferray.run.sections`: the typed spec (:class:`SearchSpec`)
  with the sections the stages after the sweep read (:class:`EnsembleConfig`,
  :class:`DistillConfig`, :class:`RetentionConfig`), and :func:`read_run_spec`, the one
  reader of ``RUN/spec.yaml``;
* :mod:`ferray.run.manifest`: ``ferray_run.json``, what the sweep started with;
* :mod:`ferray.run.warm_start`: the earlier runs a sweep started from, and each trial's origin;
* :mod:`ferray.run.results` and :mod:`ferray.run.status`: ``results.parquet`` and the
  sweep's state (``ferray status``);
* :mod:`ferray.run.pareto`: Pareto fronts of several objectives (:func:`pareto_front`,
  :func:`non_dominated_sort`, :func:`hypervolume_2d`);
* :mod:`ferray.run.predictions`: the out-of-fold and holdout prediction files every trial,
  the ensemble and the student write (:class:`Predictions`, :func:`read_predictions`);
* :mod:`ferray.run.weights`: the metadata of every weights file (:class:`WeightsMeta`);
* :mod:`ferray.run.retention`, :mod:`ferray.run.disk` and :mod:`ferray.run.trial_record`:
  what the run keeps of each ended trial, its size, and what a cleaned trial recorded.

>>> from ferray.run import RunLayout, get_status, read_run_spec
>>> spec = read_run_spec("runs/quickstart-20261130-120000")          # doctest: +SKIP
>>> get_status("runs/quickstart-20261130-120000")["best"]["params"]  # doctest: +SKIP
"""

# Exports load on first use: `ferray.predict` reads a bundle through `ferray.run.layout` and
# must not pay for pydantic specs or pyarrow tables it never uses.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    # layout
    "RunLayout": "ferray.run.layout",
    "TrialLayout": "ferray.run.layout",
    "EnsembleLayout": "ferray.run.layout",
    "DistillLayout": "ferray.run.layout",
    "BundleLayout": "ferray.run.layout",
    "ReportLayout": "ferray.run.layout",
    # the spec and its sections
    "SearchSpec": "ferray.run.spec",
    "ParamSpec": "ferray.run.spec",
    "load_search_spec": "ferray.run.spec",
    "read_run_spec": "ferray.run.spec",
    "BudgetConfig": "ferray.run.sections",
    "SearchConfig": "ferray.run.sections",
    "Objective": "ferray.run.sections",
    "TrackingConfig": "ferray.run.sections",
    "WandbConfig": "ferray.run.sections",
    "EnsembleConfig": "ferray.run.sections",
    "GreedyConfig": "ferray.run.sections",
    "DistillConfig": "ferray.run.sections",
    "RetentionConfig": "ferray.run.sections",
    "WarmStartConfig": "ferray.run.warm_start",
    # what the run recorded
    "read_manifest": "ferray.run.manifest",
    "ResultsTable": "ferray.run.results",
    "read_results": "ferray.run.results",
    "get_status": "ferray.run.status",
    "read_warm_start": "ferray.run.warm_start",
    "render_status": "ferray.run.status",
    "pareto_front": "ferray.run.pareto",
    "non_dominated_sort": "ferray.run.pareto",
    "hypervolume_2d": "ferray.run.pareto",
    # the stages' formats
    "Predictions": "ferray.run.predictions",
    "read_predictions": "ferray.run.predictions",
    "write_predictions": "ferray.run.predictions",
    "WeightsMeta": "ferray.run.weights",
    # what it keeps
    "apply_retention": "ferray.run.retention",
    "RetentionReport": "ferray.run.retention",
    "disk_usage": "ferray.run.disk",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.run.disk import disk_usage
    from ferray.run.layout import BundleLayout, DistillLayout, EnsembleLayout, ReportLayout, RunLayout, TrialLayout
    from ferray.run.manifest import read_manifest
    from ferray.run.pareto import hypervolume_2d, non_dominated_sort, pareto_front
    from ferray.run.predictions import Predictions, read_predictions, write_predictions
    from ferray.run.results import ResultsTable, read_results
    from ferray.run.retention import RetentionReport, apply_retention
    from ferray.run.sections import (
        BudgetConfig,
        DistillConfig,
        EnsembleConfig,
        GreedyConfig,
        Objective,
        RetentionConfig,
        SearchConfig,
        TrackingConfig,
        WandbConfig,
    )
    from ferray.run.spec import ParamSpec, SearchSpec, load_search_spec, read_run_spec
    from ferray.run.status import get_status, render_status
    from ferray.run.warm_start import WarmStartConfig, read_warm_start
    from ferray.run.weights import WeightsMeta
