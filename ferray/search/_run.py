"""The sweep: Ray Tune trials, each a k-fold Ray Train run, searched by Optuna and pruned by ASHA.

:func:`run_search` loads the data and makes the fold plan once in the driver, puts the
data in Ray's object store, and starts a Tune ``Tuner`` whose trainable is a function:
it merges the trial's sampled parameters into the base training config, validates it,
builds the trial's ``TorchTrainer`` (the fold workers report per epoch to Tune through
``TuneReportCallback``) and fits it. :func:`dry_run` shows what a sweep would do.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ferray.errors import ConfigError, FerrayError
from ferray.search._resume import MANIFEST
from ferray.search._spec import SearchSpec, load_search_spec
from ferray.training.config import TrainConfig
from ferray.training.resources import RESOURCE_QUANTUM, ResourcePlan, plan_resources

__all__ = ["run_search", "resume_search", "dry_run", "SearchResult", "SearchInterrupted",
           "plan_search_resources", "trial_config", "default_run_dir", "DRIVER_CPUS", "resume_command", "MANIFEST"]


#: CPUs each trial's driver (the Tune function that starts its fold workers) holds. Not 0:
#: a Tune placement group cannot have an empty bundle. Small, so the fold workers get the
#: rest; the resource plan counts it so k workers plus the driver always fit together.
DRIVER_CPUS = 0.01


class SearchInterrupted(FerrayError):
    """The sweep was stopped (Ctrl-C); its state is saved in the run directory."""


def resume_command(run_dir: str | os.PathLike) -> str:
    return f"ferray resume {run_dir}"


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
        """The best trial (see :func:`ferray.search.get_status`), with its ``params``."""
        return self.status.get("best")

    @property
    def results_path(self) -> Path:
        return self.run_dir / "results.parquet"

    @property
    def best_config(self) -> TrainConfig | None:
        """The full training config of the best trial."""
        if not self.best:
            return None
        spec = load_search_spec(self.run_dir / "spec.yaml", check_backbones=False)
        return trial_config(spec.base_dict(), self.best["params"])


def trial_config(base: dict, params: dict) -> TrainConfig:
    """The validated training config of one trial: ``base`` with the dotted ``params`` set.

    Raises:
        ConfigError: the combination is not a valid training config (names each key).
    """
    from ferray._config import validate_model
    from ferray.search._space import apply_params

    return validate_model(TrainConfig, apply_params(base, params))


def plan_search_resources(spec: SearchSpec, k: int, cluster_cpus: float, cluster_gpus: float = 0.0
                          ) -> ResourcePlan:
    """The resource plan of a sweep: a driver of :data:`DRIVER_CPUS` plus ``k`` fold workers per trial.

    Without ``resources.cpus_per_worker`` and without GPUs, ``budget.max_concurrent`` trials
    share the CPUs (overlapping one trial's start-up with another's compute); otherwise the
    plan gives one trial the machine (see :func:`ferray.training.resources.plan_resources`).

    Raises:
        ConfigError: a trial could never be placed on this cluster.
    """
    cpus_per_worker = spec.resources.cpus_per_worker
    wanted = spec.budget.max_concurrent
    if cpus_per_worker is None and not spec.resources.gpus_per_worker and wanted and wanted > 1:
        share = (cluster_cpus - wanted * DRIVER_CPUS) / (wanted * k)
        share = math.floor(share / RESOURCE_QUANTUM + 1e-6) * RESOURCE_QUANTUM
        share = math.floor(share) if share >= 1 else math.floor(share * 1000) / 1000
        if share > 0:
            cpus_per_worker = share
    try:
        return plan_resources(k, cluster_cpus, cluster_gpus, cpus_per_worker=cpus_per_worker,
                              gpus_per_worker=spec.resources.gpus_per_worker, driver_cpus=DRIVER_CPUS,
                              max_concurrent=wanted)
    except ConfigError as exc:
        raise ConfigError(f"this sweep can never be placed: {exc}") from None


def default_run_dir(spec: SearchSpec, storage: str | os.PathLike = "runs", name: str | None = None) -> Path:
    """``<storage>/<name>``, the name defaulting to ``<spec name>-<date-time>``."""
    return Path(storage) / (name or f"{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def _is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def _local_cluster(num_cpus: int | None) -> tuple[float, float]:
    import torch

    return float(num_cpus or os.cpu_count() or 1), float(torch.cuda.device_count())


def _cluster(address: str | None, num_cpus: int | None) -> tuple[float, float, str]:
    """CPUs and GPUs of the Ray cluster when one is connected/addressed, else of this machine."""
    import ray

    if ray.is_initialized() or address or os.environ.get("RAY_ADDRESS"):
        from ferray.training._trial import ensure_ray

        res = ensure_ray(address, num_cpus=num_cpus)
        return float(res.get("CPU", 0)), float(res.get("GPU", 0)), "the Ray cluster"
    cpus, gpus = _local_cluster(num_cpus)
    return cpus, gpus, "this machine"


def _as_spec(spec: SearchSpec | str | os.PathLike) -> tuple[SearchSpec, Path | None]:
    if isinstance(spec, SearchSpec):
        return spec, None
    return load_search_spec(spec), Path(spec)


def dry_run(spec: SearchSpec | str | os.PathLike, *, address: str | None = None,
            num_cpus: int | None = None) -> str:
    """What a sweep would do, as text: the resolved spec, the fold plan and the resource plan.

    Loads the data (so data problems show now) but trains nothing.

    Raises:
        ConfigError: invalid spec, or a trial that could never be placed.
        DataError: unusable data.
    """
    import yaml

    from ferray.training._trial import load_data, make_fold_plan

    spec, _ = _as_spec(spec)
    resolved = spec.model_dump(mode="json", exclude={"space"})
    lines = [f"# search spec '{spec.name}' (resolved, defaults filled in)",
             yaml.safe_dump(resolved, sort_keys=False).rstrip(), "",
             f"space ({len(spec.space)} parameters):"]
    lines += [f"  {k}: {p.describe()}" for k, p in spec.space.items()]
    sampler = "random" if spec.search.sampler == "random" else (
        f"TPE (seed {spec.search.seed}, multivariate {spec.search.multivariate})")
    stopper = (f"ASHA on epochs: grace {spec.budget.grace_period}, reduction factor "
               f"{spec.budget.reduction_factor:g}, max {spec.budget.max_epochs}") if spec.budget.early_stopping \
        else "none (every trial runs max_epochs)"
    lines += ["", f"search: {spec.budget.trials} trials, {sampler}, optimising fold-mean {spec.metric} "
                  f"({spec.mode}); early stopping: {stopper}"]
    data = load_data(spec.base_config())
    plan = make_fold_plan(spec.base_config(), data)
    lines += ["", f"data: {data.origin if hasattr(data, 'origin') else spec.data.source}: {len(data)} images",
              "fold plan:", plan.summary(data)]
    cpus, gpus, where = _cluster(address, num_cpus)
    rplan = plan_search_resources(spec, plan.k, cpus, gpus)
    lines += ["", f"resource plan (from {where}):", rplan.explain()]
    return "\n".join(lines)


def _trial_fn(config: dict, *, base: dict, data_box: list, plan: Any, resources: ResourcePlan,
              experiment: str) -> None:
    """One Tune trial: validate its config, then fit its k-fold TorchTrainer.

    Checkpoints (and, on a local run, the prediction files and epoch log) go straight to the
    trial's folder in the run directory, not to Tune's per-session working directory: a
    resumed trial's Train run finds its last checkpoint there and continues from it.
    """
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ferray.search._reaper import PlacementGroupReporter
    from ferray.training._trial import TrainingFailed, _reason, build_trainer

    cfg = trial_config(base, config)
    context = ray.tune.get_context()
    storage = f"{experiment.rstrip('/')}/{_trial_name(context)}"
    output_dir = context.get_trial_dir() if _is_uri(experiment) else storage  # Tune uploads the former
    callbacks = [TuneReportCallback(), PlacementGroupReporter(data_box[1], context.get_trial_id())]
    trainer = build_trainer(cfg, data_box[0], plan, resources, output_dir=output_dir, name="checkpoints",
                            storage_path=storage, callbacks=callbacks)
    try:
        trainer.fit()
    except Exception as exc:  # Ray wraps the worker's error in several layers; keep its message
        raise TrainingFailed(_reason(exc)) from None


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


def run_search(spec: SearchSpec | str | os.PathLike, *, run_dir: str | os.PathLike | None = None,
               storage: str | os.PathLike = "runs", name: str | None = None, address: str | None = None,
               num_cpus: int | None = None, live: bool = True, echo=print) -> SearchResult:
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
        live: show a live view of the trials on the terminal.

    Raises:
        ConfigError, DataError: bad spec or data (before any trial starts).
        SearchInterrupted: stopped with Ctrl-C; the message says how to resume.
    """
    t0 = time.perf_counter()
    spec, spec_path = _as_spec(spec)
    ray_storage: str | None = None
    if run_dir is None:
        if _is_uri(storage):
            ray_storage = str(storage)
            run_dir = default_run_dir(spec, "runs", name)
        else:
            run_dir = default_run_dir(spec, storage, name)
    run = Path(run_dir).absolute()
    if (run / "results.parquet").exists() or (run / "optuna.db").exists() or (run / MANIFEST).exists():
        raise ConfigError(f"{run} already holds a sweep; resume it with `{resume_command(run)}` or pass "
                          "another --name")
    run.mkdir(parents=True, exist_ok=True)
    if spec_path is not None:
        shutil.copyfile(spec_path, run / "spec.yaml")
    else:
        import yaml

        (run / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))

    from ray import tune

    from ferray.search._resume import write_manifest
    from ferray.training._trial import load_data, make_fold_plan

    timings: dict[str, float] = {}
    base_cfg = spec.base_config()
    data = load_data(base_cfg)
    plan = make_fold_plan(base_cfg, data)
    plan.save(run / "folds.parquet")
    experiment = f"{ray_storage.rstrip('/')}/{run.name}" if ray_storage else str(run)
    write_manifest(run, spec, spec_path=spec_path, experiment=experiment, trials=spec.budget.trials)
    timings["load_data"] = time.perf_counter() - t0
    sweep = _Sweep(spec, run, data, plan, ray_storage=ray_storage, address=address, num_cpus=num_cpus,
                   live=live, echo=echo, timings=timings, trials=spec.budget.trials, resume=False)
    tuner = tune.Tuner(sweep.trainable, tune_config=sweep.tune_config, run_config=sweep.run_config)
    return sweep.fit(tuner, t0)


def _search_generator(searcher, max_concurrent: int, trials: int):
    """Tune's ``SearchGenerator`` over a ``ConcurrencyLimiter``, with a budget that may grow.

    Tune restores a generator's trial count from the experiment state; ``ferray resume
    --extend`` raises it afterwards.
    """
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.search_generator import SearchGenerator

    class SweepGenerator(SearchGenerator):
        def __init__(self, searcher, trials: int):
            super().__init__(searcher)
            self._wanted = trials

        def restore_from_dir(self, dirpath: str) -> None:
            super().restore_from_dir(dirpath)
            if self._wanted > self._total_samples:
                self._total_samples = self._wanted
                self._finished = False

    return SweepGenerator(ConcurrencyLimiter(searcher, max_concurrent=max(1, max_concurrent)), trials)


class _Sweep:
    """What a new and a resumed sweep share: Ray, the resource plan, searcher, scheduler, callbacks."""

    def __init__(self, spec: SearchSpec, run: Path, data, plan, *, ray_storage: str | None, address: str | None,
                 num_cpus: int | None, live: bool, echo, timings: dict, trials: int, resume: bool):
        import ray
        from ray import tune
        from ray.util.queue import Queue

        from ferray.search._callbacks import LiveView, ResultsCallback, TensorBoardCallback
        from ferray.search._optuna import (
            PruneAwareOptunaSearch,
            PruningASHA,
            SchedulerState,
            make_sampler,
            study_storage,
        )
        from ferray.search._reaper import PlacementGroupReaper
        from ferray.search._space import define_by_run
        from ferray.training._trial import ensure_ray

        self.spec, self.run, self.echo, self.timings, self.trials = spec, run, echo, timings, trials
        t = time.perf_counter()
        cluster = ensure_ray(address, num_cpus=num_cpus)
        timings["ray_start"] = time.perf_counter() - t
        self.rplan = rplan = plan_search_resources(spec, plan.k, cluster.get("CPU", 0), cluster.get("GPU", 0))
        echo(rplan.explain())
        data_ref = ray.put(data)

        metric, mode = "metric", spec.mode
        self.scheduler = scheduler = None
        if spec.budget.early_stopping:
            self.scheduler = scheduler = PruningASHA(
                time_attr="epoch", max_t=spec.budget.max_epochs, grace_period=spec.budget.grace_period,
                reduction_factor=spec.budget.reduction_factor)
        base = spec.base_dict()
        self.searcher = searcher = PruneAwareOptunaSearch(
            define_by_run(spec.space, base), metric=metric, mode=mode, sampler=make_sampler(spec),
            study_name=spec.name, storage=study_storage(run), scheduler=scheduler,
            max_epochs=spec.budget.max_epochs,
        )
        self.results = ResultsCallback(run / "results.parquet", max_epochs=spec.budget.max_epochs,
                                       searcher=searcher, scheduler=scheduler, resume=resume)
        pg_queue = Queue(actor_options={"num_cpus": 0})
        # Tune restores callbacks' state by position: the one stateful callback comes first.
        callbacks: list = [SchedulerState(scheduler)] if scheduler is not None else []
        callbacks += [PlacementGroupReaper(pg_queue), self.results, TensorBoardCallback(run / "tensorboard")]
        self.saved_env: dict[str, str | None] = {}
        if spec.tracking.wandb.enabled:
            wandb_cb, wandb_mode = _wandb_callback(spec, run)
            callbacks.append(wandb_cb)
            for key, value in (("WANDB_MODE", wandb_mode), ("WANDB_SILENT", "true")):
                self.saved_env[key] = os.environ.get(key)
            if wandb_mode == "offline":
                echo(f"W&B: offline runs under {run / 'wandb'}; upload later with "
                     f"`wandb sync {run / 'wandb'}/offline-run-*`")
            self.env = {"WANDB_MODE": wandb_mode, "WANDB_SILENT": "true"}
        else:
            self.env = {}
        if live:
            callbacks.append(LiveView(trials=trials, max_epochs=spec.budget.max_epochs,
                                      concurrent=rplan.concurrent_trials, metric=spec.metric, mode=mode,
                                      table=self.results.table if resume else None))

        trainable = tune.with_parameters(_trial_fn, base=base, data_box=[data_ref, pg_queue], plan=plan,
                                         resources=rplan, experiment=f"{ray_storage.rstrip('/')}/{run.name}"
                                         if ray_storage else str(run))
        self.trainable = tune.with_resources(trainable, {"CPU": rplan.driver_cpus})
        self.tune_config = tune.TuneConfig(
            metric=metric, mode=mode, search_alg=_search_generator(searcher, rplan.concurrent_trials, trials),
            scheduler=scheduler, num_samples=trials, time_budget_s=spec.budget.time_limit_s,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        )
        self.run_config = tune.RunConfig(
            name=run.name,
            storage_path=ray_storage or str(run.parent),
            # A failing trial (bad combination, NaN loss) is recorded and the sweep goes on.
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=callbacks,
            verbose=0 if live else 1,
        )

    def fit(self, tuner, t0: float) -> SearchResult:
        """Fit the tuner, then read the run's status; raise :class:`SearchInterrupted` on Ctrl-C."""
        from ferray.search._status import get_status

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
        self.results.table.write(run / "results.parquet")
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
                f"{run}. Resume with: {resume_command(run)}")
        return SearchResult(run_dir=run, status=status, plan=self.rplan, wall_seconds=wall, timings=timings)


def _trial_name(trial) -> str:
    """A trial's name and folder: its Tune id (works for a Trial and a trial's TuneContext)."""
    get = getattr(trial, "get_trial_id", None)
    return get() if get is not None else trial.trial_id


def resume_search(run_dir: str | os.PathLike, *, extend: int = 0, retry_errored: bool = False,
                  address: str | None = None, num_cpus: int | None = None, live: bool = True,
                  echo=print) -> SearchResult:
    """Continue an interrupted sweep from its run directory (or add ``extend`` trials to a finished one).

    Finished trials are never run again; unfinished ones continue from their last epoch
    checkpoint with the same fold plan, Optuna study, ASHA rungs and spec. Errored trials
    stay errored (their reason is in ``ferray status``) unless ``retry_errored``: then they
    too continue from their last checkpoint (a new Optuna trial records the retry, as
    Optuna cannot reopen a failed one).

    Raises:
        ConfigError: not a ferray run, or its spec was edited since the sweep started.
        DataError: the data's fingerprint changed.
        SearchInterrupted: stopped again (Ctrl-C).
    """
    from ray import tune

    from ferray.search._resume import check_resumable, update_manifest

    t0 = time.perf_counter()
    if extend < 0:
        raise ConfigError(f"--extend {extend}: the number of trials to add must be >= 0")
    run = Path(run_dir).absolute()
    timings: dict[str, float] = {}
    checked = check_resumable(run, echo=echo)
    spec, data, plan, manifest = checked.spec, checked.data, checked.plan, checked.manifest
    trials = int(manifest["trials"]) + extend
    done = checked.finished_trials - (checked.errored_trials if retry_errored else 0)
    if done >= trials:
        echo(f"{run}: all {trials} trials of this sweep have ended; nothing to resume "
             f"(add trials with `ferray resume {run} --extend N`"
             + (f", retry the {checked.errored_trials} errored with --retry-errored)" if checked.errored_trials
                and not retry_errored else ")"))
        from ferray.search._status import get_status

        return SearchResult(run_dir=run, status=get_status(run), plan=None, wall_seconds=time.perf_counter() - t0,
                            timings=timings)
    timings["load_data"] = time.perf_counter() - t0
    echo(f"resuming {run}: {done} of {trials} trials ended" + (f" ({extend} added)" if extend else ""))
    sweep = _Sweep(spec, run, data, plan, ray_storage=None if not _is_uri(manifest["experiment"]) else
                   manifest["experiment"].rsplit("/", 1)[0], address=address, num_cpus=num_cpus, live=live,
                   echo=echo, timings=timings, trials=trials, resume=True)
    sweep.searcher.retry_errored = retry_errored
    if extend:
        update_manifest(run, trials=trials)
    t = time.perf_counter()
    tuner = tune.Tuner.restore(manifest["experiment"], trainable=sweep.trainable, resume_unfinished=True,
                               resume_errored=retry_errored)
    # Tuner.restore rebuilds the searcher, scheduler and callbacks from the pickle written
    # when the sweep started (the scheduler's rungs empty, the callbacks' actor handles
    # gone); use this process's, whose state Tune then restores from the experiment checkpoint.
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_tune_config") or not hasattr(internal, "_run_config"):
        raise FerrayError("this Ray version restores tuners differently than ferray expects; "
                          f"ferray resume needs ray 2.5x with Tune's TunerInternal (found {_ray_version()})")
    internal._tune_config = sweep.tune_config
    internal._run_config.callbacks = sweep.run_config.callbacks
    internal._run_config.failure_config = sweep.run_config.failure_config
    internal._run_config.verbose = sweep.run_config.verbose
    timings["restore"] = time.perf_counter() - t
    return sweep.fit(tuner, t0)


def _ray_version() -> str:
    import ray

    return ray.__version__
