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
from ferray.search._spec import SearchSpec, load_search_spec
from ferray.training.config import TrainConfig
from ferray.training.resources import RESOURCE_QUANTUM, ResourcePlan, plan_resources

__all__ = ["run_search", "dry_run", "SearchResult", "SearchInterrupted", "plan_search_resources",
           "trial_config", "default_run_dir", "DRIVER_CPUS", "resume_command"]

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
    plan: ResourcePlan
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
              storage_root: str | None = None) -> None:
    """One Tune trial: validate its config, then fit its k-fold TorchTrainer."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ferray.search._reaper import PlacementGroupReporter
    from ferray.training._trial import TrainingFailed, _reason, build_trainer

    cfg = trial_config(base, config)
    context = ray.tune.get_context()
    trial_dir = context.get_trial_dir()
    storage = trial_dir if storage_root is None else f"{storage_root.rstrip('/')}/{Path(trial_dir).name}"
    callbacks = [TuneReportCallback(), PlacementGroupReporter(data_box[1], context.get_trial_id())]
    trainer = build_trainer(cfg, data_box[0], plan, resources, output_dir=trial_dir, name="checkpoints",
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
    timings: dict[str, float] = {}
    spec, spec_path = _as_spec(spec)
    ray_storage: str | None = None
    if run_dir is None:
        if _is_uri(storage):
            ray_storage = str(storage)
            run_dir = default_run_dir(spec, "runs", name)
        else:
            run_dir = default_run_dir(spec, storage, name)
    run = Path(run_dir).absolute()
    if (run / "results.parquet").exists() or (run / "optuna.db").exists():
        raise ConfigError(f"{run} already holds a sweep; resume it with `{resume_command(run)}` or pass "
                          "another --name")
    run.mkdir(parents=True, exist_ok=True)
    if spec_path is not None:
        shutil.copyfile(spec_path, run / "spec.yaml")
    else:
        import yaml

        (run / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))

    import ray
    from ray import tune

    from ferray.search._callbacks import LiveView, ResultsCallback, TensorBoardCallback
    from ferray.search._optuna import PruneAwareOptunaSearch, PruningASHA, make_sampler, study_storage
    from ferray.search._space import define_by_run
    from ferray.training._trial import ensure_ray, load_data, make_fold_plan

    base_cfg = spec.base_config()
    data = load_data(base_cfg)
    plan = make_fold_plan(base_cfg, data)
    plan.save(run / "folds.parquet")
    timings["load_data"] = time.perf_counter() - t0

    t = time.perf_counter()
    cluster = ensure_ray(address, num_cpus=num_cpus)
    timings["ray_start"] = time.perf_counter() - t
    rplan = plan_search_resources(spec, plan.k, cluster.get("CPU", 0), cluster.get("GPU", 0))
    echo(rplan.explain())
    data_ref = ray.put(data)

    metric, mode = "metric", spec.mode
    scheduler = None
    if spec.budget.early_stopping:
        scheduler = PruningASHA(time_attr="epoch", max_t=spec.budget.max_epochs,
                                grace_period=spec.budget.grace_period,
                                reduction_factor=spec.budget.reduction_factor)
    base = spec.base_dict()
    searcher = PruneAwareOptunaSearch(
        define_by_run(spec.space, base), metric=metric, mode=mode, sampler=make_sampler(spec),
        study_name=spec.name, storage=study_storage(run), scheduler=scheduler,
        max_epochs=spec.budget.max_epochs,
    )
    results_cb = ResultsCallback(run / "results.parquet", max_epochs=spec.budget.max_epochs,
                                 searcher=searcher, scheduler=scheduler)
    from ray.util.queue import Queue

    from ferray.search._reaper import PlacementGroupReaper

    pg_queue = Queue(actor_options={"num_cpus": 0})
    callbacks: list = [PlacementGroupReaper(pg_queue), results_cb, TensorBoardCallback(run / "tensorboard")]
    saved_env: dict[str, str | None] = {}
    if spec.tracking.wandb.enabled:
        wandb_cb, wandb_mode = _wandb_callback(spec, run)
        callbacks.append(wandb_cb)
        for key, value in (("WANDB_MODE", wandb_mode), ("WANDB_SILENT", "true")):
            saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        if wandb_mode == "offline":
            echo(f"W&B: offline runs under {run / 'wandb'}; upload later with `wandb sync {run / 'wandb'}/offline-run-*`")
    if live:
        callbacks.append(LiveView(trials=spec.budget.trials, max_epochs=spec.budget.max_epochs,
                                  concurrent=rplan.concurrent_trials, metric=spec.metric, mode=mode))

    trainable = tune.with_parameters(_trial_fn, base=base, data_box=[data_ref, pg_queue], plan=plan, resources=rplan,
                                     storage_root=None if ray_storage is None else
                                     f"{ray_storage.rstrip('/')}/{run.name}")
    trainable = tune.with_resources(trainable, {"CPU": rplan.driver_cpus})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode, search_alg=searcher, scheduler=scheduler,
            num_samples=spec.budget.trials, max_concurrent_trials=rplan.concurrent_trials,
            time_budget_s=spec.budget.time_limit_s,
            trial_name_creator=lambda trial: trial.trial_id,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=run.name,
            storage_path=ray_storage or str(run.parent),
            # A failing trial (bad combination, NaN loss) is recorded and the sweep goes on.
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=callbacks,
            verbose=0 if live else 1,
        ),
    )
    interrupted = False
    t = time.perf_counter()
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    timings["sweep"] = time.perf_counter() - t
    results_cb.table.write(run / "results.parquet")

    from ferray.search._status import get_status

    status = get_status(run)
    finished = sum(n for s, n in status["counts"].items() if s in ("COMPLETED", "PRUNED", "ERROR"))
    out_of_time = spec.budget.time_limit_s is not None and timings["sweep"] >= spec.budget.time_limit_s * 0.98
    if not interrupted and finished < spec.budget.trials and not out_of_time:
        interrupted = True  # Tune caught the first Ctrl-C itself and returned early
    wall = time.perf_counter() - t0
    timings["total"] = wall
    if interrupted:
        raise SearchInterrupted(
            f"the sweep was interrupted after {finished} of {spec.budget.trials} trials; its state is in "
            f"{run}. Resume with: {resume_command(run)}")
    return SearchResult(run_dir=run, status=status, plan=rplan, wall_seconds=wall, timings=timings)
