"""The sweep: Ray Tune trials, each a k-fold Ray Train run, searched by Optuna and pruned by ASHA.

:func:`run_search` loads the data and makes the fold plan once in the driver, puts the
data in Ray's object store, and starts a Tune ``Tuner`` whose trainable is
:func:`ferray.search._trial.trial_fn`. Planning (resources, dry run) lives in
:mod:`ferray.search._plan`, the trial function in :mod:`ferray.search._trial`, resuming in
:mod:`ferray.search._resume`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferray._io import atomic_write, atomic_write_text
from ferray.errors import ConfigError, FerrayError
from ferray.run.layout import RunLayout
from ferray.run.manifest import write_manifest
from ferray.run.spec import SearchSpec, read_run_spec
from ferray.run.status import get_status
from ferray.runtime.logs import ray_logs_to
from ferray.runtime.planner import ResourcePlan
from ferray.search._plan import (
    DRIVER_CPUS,
    as_spec,
    default_run_dir,
    dry_run,
    is_uri,
    objectives_text,
    plan_search_resources,
    trial_config,
)
from ferray.search._warm import (
    apply_warm_start,
    decide,
    describe,
    open_sources,
    stamp_study,
    with_sources,
    write_record,
)
from ferray.training.config import TrainConfig

__all__ = [
    "run_search",
    "header",
    "dry_run",
    "SearchResult",
    "SearchInterrupted",
    "plan_search_resources",
    "trial_config",
    "default_run_dir",
    "DRIVER_CPUS",
    "resume_command",
]


class SearchInterrupted(FerrayError):
    """The sweep was stopped (Ctrl-C); its state is saved in the run directory."""


@dataclass
class SearchResult:
    """What :func:`run_search` returns."""

    run_dir: Path
    status: dict
    plan: ResourcePlan | None
    wall_seconds: float
    interrupted: bool = False
    timings: dict = field(default_factory=dict)

    @property
    def best(self) -> dict | None:
        """The best trial (see :func:`ferray.run.get_status`), with its ``params``."""
        return self.status.get("best")

    @property
    def results_path(self) -> Path:
        return RunLayout(self.run_dir).results

    @property
    def best_config(self) -> TrainConfig | None:
        """The full training config of the best trial."""
        if not self.best:
            return None
        spec = read_run_spec(self.run_dir)
        return trial_config(spec.base_dict(), self.best["params"])


def _wandb_callback(spec: SearchSpec, run_dir: Path):
    cfg = spec.tracking.wandb
    try:
        from ray.air.integrations.wandb import WandbLoggerCallback
    except ImportError as exc:  # pragma: no cover - wandb is a dependency, but keep the hint
        raise ConfigError("tracking.wandb.enabled needs wandb: pip install wandb") from exc
    mode = cfg.mode
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    kwargs: dict[str, Any] = {"dir": str(run_dir.absolute()), "mode": mode}
    if cfg.entity:
        kwargs["entity"] = cfg.entity
    if cfg.tags:
        kwargs["tags"] = list(cfg.tags)
    return WandbLoggerCallback(project=cfg.project, group=spec.name, **kwargs), mode


def resume_command(run_dir: str | os.PathLike) -> str:
    """The command that continues the sweep in ``run_dir``."""
    return f"ferray resume {run_dir}"


def run_search(
    spec: SearchSpec | str | os.PathLike,
    *,
    run_dir: str | os.PathLike | None = None,
    storage: str | os.PathLike = "runs",
    name: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    data: str | None = None,
    live: bool = True,
    verbose: bool = False,
    warm_start: Sequence[str] = (),
    echo=print,
) -> SearchResult:
    """Run a hyperparameter sweep and return its results.

    Args:
        spec: a :class:`SearchSpec` or the path of a spec YAML file.
        run_dir: the sweep's folder (spec copy, folds, Optuna study, Tune state, trials,
            ``results.parquet``, TensorBoard logs). Default ``<storage>/<name>``.
        storage: parent of the run folder, or a URI (``s3://...``) for Ray's storage; with a
            URI the driver-side files stay in ``runs/<name>``.
        name: run folder name (default ``<spec name>-<date-time>``).
        address: a Ray cluster to connect to (default: ``RAY_ADDRESS`` or a new local Ray).
        num_cpus: CPUs of a new local Ray (default: all).
        data: a data source that replaces the spec's ``data.source`` (the run's ``spec.yaml``
            records the replacement).
        live: show a live panel of the trials on a terminal (else one line per event).
        verbose: show Ray's own log lines and workers' output too (they always go to the
            run's ``ferray.log`` / Ray's session folder).
        warm_start: earlier runs to start from, added to the spec's ``search.warm_start``
            (run folders, storage URIs of them, Optuna study files; see :mod:`ferray.search._warm`).

    Raises:
        ConfigError, DataError: bad spec or data, a bad run name, a warm-start source that is
            not a run or study, or a run folder that is not empty and not this sweep's (before
            any trial starts).
        SearchInterrupted: stopped with Ctrl-C; the message says how to resume.
    """
    t0 = time.perf_counter()
    spec, spec_path = as_spec(spec)
    if data is not None:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"source": str(data)})})
    if warm_start:
        spec = with_sources(spec, warm_start)
    warm_sources = open_sources(spec.search.warm_start.sources)  # a bad source fails before the run folder exists
    ray_storage: str | None = None
    if run_dir is None:
        if is_uri(storage):
            ray_storage = str(storage)
            run_dir = default_run_dir(spec, "runs", name)
        else:
            run_dir = default_run_dir(spec, storage, name)
    run = Path(run_dir).absolute()
    layout = RunLayout(run)
    if layout.results.exists() or layout.study.exists() or layout.manifest.exists():
        raise ConfigError(f"{run} already holds a sweep; resume it with `{resume_command(run)}` or pass another --name")
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise ConfigError(
            f"{run} exists and is not an empty folder or a ferray run; ferray never writes into "
            "it. Pass another --name (or --storage), or empty the folder"
        )
    run.mkdir(parents=True, exist_ok=True)

    if spec_path is not None and data is None and not warm_start:
        atomic_write(layout.spec, Path(spec_path).read_bytes())
    else:
        import yaml

        atomic_write_text(layout.spec, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))

    from ray import tune

    from ferray.training import load_data, make_fold_plan

    timings: dict[str, float] = {}
    base_cfg = spec.base_config()
    data = load_data(base_cfg)
    plan = make_fold_plan(base_cfg, data)
    plan.save(layout.folds)
    experiment = f"{ray_storage.rstrip('/')}/{run.name}" if ray_storage else str(run)
    write_manifest(run, spec, spec_path=spec_path, experiment=experiment, trials=spec.budget.trials)
    timings["load_data"] = time.perf_counter() - t0
    for line in header(spec, spec_path, data, plan, layout, verbose=verbose):
        echo(line)
    decisions = [decide(source, spec, plan.data_fingerprint) for source in warm_sources]
    for line in describe(decisions):
        echo(line)
    with ray_logs_to(layout.log, verbose=verbose):
        sweep = _Sweep(
            spec,
            run,
            data,
            plan,
            ray_storage=ray_storage,
            address=address,
            num_cpus=num_cpus,
            live=live,
            echo=echo,
            timings=timings,
            trials=spec.budget.trials,
            resume=False,
            verbose=verbose,
        )
        stamp_study(sweep.searcher.study, spec, plan.data_fingerprint)
        apply_warm_start(sweep.searcher.study, decisions)
        write_record(run, decisions)
        tuner = tune.Tuner(sweep.trainable, tune_config=sweep.tune_config, run_config=sweep.run_config)
        return sweep.fit(tuner, t0)


def header(
    spec: SearchSpec, spec_path: Path | None, data, plan, layout: RunLayout, *, verbose: bool = False
) -> list[str]:
    """ferray's own lines before a sweep starts: what runs, on what, and where to look."""
    h, w, c = data.image_shape
    sizes = ", ".join(str(int((plan.fold == f).sum())) for f in range(plan.k))
    holdout = int((plan.fold < 0).sum())
    asha = "multi-objective ASHA" if spec.search.multi_objective else "ASHA"
    stopper = (
        f"{asha} (grace {spec.budget.grace_period}, reduction {spec.budget.reduction_factor:g})"
        if spec.budget.early_stopping
        else "no early stopping"
    )
    source = str(spec_path) if spec_path is not None else "(given in Python)"
    return [
        f"ferray sweep '{spec.name}': {spec.budget.trials} trials x <= {spec.budget.max_epochs} epochs, "
        f"{spec.search.sampler.upper()} on {objectives_text(spec)}, {stopper}; spec {source}",
        f"data: {spec.data.source}: {len(data)} images {h}x{w}x{c}, {data.num_classes} classes",
        f"folds: k={plan.k} ({sizes} rows), holdout {holdout} rows, seed {spec.folds.seed}",
        f"run directory: {layout.root}",
        f"logs: {layout.log} (Ray's own lines{'; also shown here' if verbose else '; --verbose shows them here'})",
        f"follow: tensorboard --logdir {layout.tensorboard}  |  optuna-dashboard sqlite:///{layout.study}",
    ]


def _search_generator(searcher, max_concurrent: int, trials: int):
    """Tune's ``SearchGenerator`` over a ``ConcurrencyLimiter``, with a budget that may grow.

    Tune restores a generator's trial count from the experiment state; ``ferray resume
    --extend`` raises it afterwards.
    """
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.search_generator import SearchGenerator

    from ferray.runtime.compat import trial_ids_from

    class SweepGenerator(SearchGenerator):
        def __init__(self, searcher, trials: int):
            super().__init__(searcher)
            self._wanted = trials

        def create_trial_if_possible(self, experiment_spec: dict):
            # A trial killed during its start-up continues under its own id (see _reconcile).
            reserved = searcher.reserved_ids()
            if not reserved:
                return super().create_trial_if_possible(experiment_spec)
            with trial_ids_from(reserved[0]):
                return super().create_trial_if_possible(experiment_spec)

        def restore_from_dir(self, dirpath: str) -> None:
            super().restore_from_dir(dirpath)
            if self._wanted > self._total_samples:
                self._total_samples = self._wanted
                self._finished = False

    class SweepLimiter(ConcurrencyLimiter):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self.live_trials:
                return super().on_trial_complete(trial_id, result=result, error=error)
            # A trial this limiter did not admit: an errored trial a resumed sweep retries (it
            # ended in an earlier process). Its end still belongs in the study; Tune hands the
            # result that made the scheduler stop a trial to on_trial_complete alone.
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

    return SweepGenerator(SweepLimiter(searcher, max_concurrent=max(1, max_concurrent)), trials)


class _Sweep:
    """What a new and a resumed sweep share: Ray, the resource plan, searcher, scheduler, callbacks."""

    def __init__(
        self,
        spec: SearchSpec,
        run: Path,
        data,
        plan,
        *,
        ray_storage: str | None,
        address: str | None,
        num_cpus: int | None,
        live: bool,
        echo,
        timings: dict,
        trials: int,
        resume: bool,
        verbose: bool = False,
    ):
        import ray
        from ray import tune

        from ferray.runtime.compat import require, summary
        from ferray.runtime.nodes import ray_nodes
        from ferray.runtime.startup import ensure_ray
        from ferray.search._hub import ReportHub
        from ferray.search._moasha import MultiObjectiveASHA
        from ferray.search._optuna import (
            PruneAwareOptunaSearch,
            PruningASHA,
            SchedulerState,
            make_sampler,
            study_storage,
        )
        from ferray.search._reaper import PlacementGroupReaper
        from ferray.search._space import define_by_run
        from ferray.search._trial import trial_fn, trial_name
        from ferray.search.callbacks import (
            LiveView,
            ResultsCallback,
            RetentionCallback,
            StallGuard,
            TensorBoardCallback,
        )

        self.spec, self.run, self.echo, self.timings, self.trials = spec, run, echo, timings, trials
        layout = RunLayout(run)
        compat = require()
        t = time.perf_counter()
        ensure_ray(address, num_cpus=num_cpus, log_to_driver=verbose)
        timings["ray_start"] = time.perf_counter() - t
        echo(summary(compat))
        self.rplan = rplan = plan_search_resources(spec, plan.k, nodes=ray_nodes())
        echo(rplan.explain())
        data_ref = ray.put(data)

        metric, mode = "metric", spec.mode
        objectives = spec.search.objectives or []
        self.scheduler = scheduler = None
        if spec.budget.early_stopping and objectives:
            self.scheduler = scheduler = MultiObjectiveASHA(
                [(o.key, o.mode) for o in objectives],
                time_attr="epoch",
                max_t=spec.budget.max_epochs,
                grace_period=spec.budget.grace_period,
                reduction_factor=spec.budget.reduction_factor,
            )
        elif spec.budget.early_stopping:
            self.scheduler = scheduler = PruningASHA(
                time_attr="epoch",
                max_t=spec.budget.max_epochs,
                grace_period=spec.budget.grace_period,
                reduction_factor=spec.budget.reduction_factor,
            )
        base = spec.base_dict()
        self.searcher = searcher = PruneAwareOptunaSearch(
            define_by_run(spec.space, base),
            # Several objectives: Optuna's study has one direction per objective.
            metric=[o.key for o in objectives] if objectives else metric,
            mode=[o.mode for o in objectives] if objectives else mode,
            sampler=make_sampler(spec),
            study_name=spec.name,
            storage=study_storage(run),
            scheduler=scheduler,
            max_epochs=spec.budget.max_epochs,
            seed=spec.search.seed,
        )
        stall = spec.budget.stall_limits()
        guard = StallGuard(stall)
        self.results = ResultsCallback(
            layout.results,
            max_epochs=spec.budget.max_epochs,
            searcher=searcher,
            scheduler=scheduler,
            resume=resume,
            guard=guard,
        )
        # One actor per sweep: trials' reports and placement groups pass through it.
        hub = ReportHub.options(num_cpus=0).remote()
        # Tune restores callbacks' state by position: the one stateful callback comes first.
        callbacks: list = [SchedulerState(scheduler)] if scheduler is not None else []
        callbacks += [guard, PlacementGroupReaper(hub), self.results, TensorBoardCallback(layout.tensorboard)]
        if resume:
            from ferray.search._reconcile import RestoredTrials

            callbacks.append(RestoredTrials(searcher, self.results, echo=echo))
        if spec.retention.enabled and not ray_storage:
            # After the results callback: it decides each ended trial's state. (With a storage
            # URI the trials' checkpoints live there; `ferray prune` cleans local runs only.)
            callbacks.append(
                RetentionCallback(
                    run,
                    spec.retention,
                    top_k=spec.ensemble.top_k,
                    results=self.results,
                    metric=spec.metric,
                    mode=mode,
                    pool=spec.ensemble.greedy_pool,
                )
            )
        self.saved_env: dict[str, str | None] = {}
        if spec.tracking.wandb.enabled:
            wandb_cb, wandb_mode = _wandb_callback(spec, run)
            callbacks.append(wandb_cb)
            for key in ("WANDB_MODE", "WANDB_SILENT"):
                self.saved_env[key] = os.environ.get(key)
            if wandb_mode == "offline":
                echo(
                    f"W&B: offline runs under {layout.wandb}; upload later with "
                    f"`wandb sync {layout.wandb}/offline-run-*`"
                )
            self.env = {"WANDB_MODE": wandb_mode, "WANDB_SILENT": "true"}
        else:
            self.env = {}
        callbacks.append(
            LiveView(
                trials=trials,
                max_epochs=spec.budget.max_epochs,
                concurrent=rplan.concurrent_trials,
                metric=spec.metric,
                mode=mode,
                table=self.results.table if resume else None,
                panel=live,
                echo=None if live else echo,
            )
        )

        trainable = tune.with_parameters(
            trial_fn,
            base=base,
            shared={"data": data_ref, "hub": hub},
            plan=plan,
            resources=rplan,
            stall=stall,
            experiment=f"{ray_storage.rstrip('/')}/{run.name}" if ray_storage else str(run),
            latency_at_start=any(o.metric.startswith("latency") for o in objectives),
        )
        self.trainable = tune.with_resources(trainable, rplan.driver_resources)
        self.tune_config = tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=_search_generator(searcher, rplan.concurrent_trials, trials),
            scheduler=scheduler,
            num_samples=trials,
            time_budget_s=spec.budget.time_limit_s,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        )
        self.run_config = tune.RunConfig(
            name=run.name,
            storage_path=ray_storage or str(run.parent),
            # A failing trial (bad combination, NaN loss) is recorded and the sweep goes on.
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=callbacks,
            verbose=0,  # ferray's own view; Tune's table names ferray's internal classes
        )

    def fit(self, tuner, t0: float) -> SearchResult:
        """Fit the tuner, then read the run's status; raise :class:`SearchInterrupted` on Ctrl-C."""

        spec, run, timings = self.spec, self.run, self.timings
        interrupted = False
        os.environ.update(self.env)
        t = time.perf_counter()
        try:
            tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for key, value in self.saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        timings["sweep"] = time.perf_counter() - t
        self.results.flush()
        self.results.table.write(RunLayout(run).results)
        status = get_status(run)
        finished = sum(n for s, n in status["counts"].items() if s in ("COMPLETED", "PRUNED", "ERROR"))
        out_of_time = spec.budget.time_limit_s is not None and timings["sweep"] >= spec.budget.time_limit_s * 0.98
        if not interrupted and finished < self.trials and not out_of_time:
            interrupted = True  # Tune caught the first Ctrl-C itself and returned early
        wall = time.perf_counter() - t0
        timings["total"] = wall
        if interrupted:
            raise SearchInterrupted(
                f"the sweep was interrupted after {finished} of {self.trials} trials; its state is in "
                f"{run}. Resume with: {resume_command(run)}"
            )
        return SearchResult(run_dir=run, status=status, plan=self.rplan, wall_seconds=wall, timings=timings)
