"""One configuration's k-fold run: k fold workers on Ray Train, from the driver's side.

:func:`build_trainer` makes the Ray Train trainer of one configuration (a ``DataParallelTrainer``
whose workers share a gloo process group, :mod:`ferray.training._backend`); the search stage
calls it inside each Tune trial. :func:`train` runs one configuration on a local or existing
Ray cluster and prints fold-mean metrics per epoch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferray.errors import ConfigError, FerrayError
from ferray.run.layout import TrialLayout
from ferray.runtime.nodes import ray_nodes
from ferray.runtime.planner import ResourcePlan, plan_resources
from ferray.runtime.startup import ensure_ray
from ferray.training.config import TrainConfig, load_train_config
from ferray.training.watch import StallLimits, TrainingStalled, fit_watched

if TYPE_CHECKING:  # the fold plan needs scikit-learn, which a trial driver never loads
    from ferray.data import FERData, FoldPlan

__all__ = [
    "train",
    "TrainResult",
    "build_trainer",
    "load_data",
    "make_fold_plan",
    "TrainingFailed",
    "failure_reason",
]


class TrainingFailed(FerrayError):
    """A trial stopped with a reason (NaN loss, out of memory, a worker error)."""


@dataclass
class TrainResult:
    """What :func:`train` returns: per-epoch fold-mean reports and where the outputs are."""

    history: list[dict]
    output_dir: Path
    plan: FoldPlan
    resources: ResourcePlan
    timings: dict = field(default_factory=dict)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def oof_path(self) -> Path:
        return TrialLayout(self.output_dir).oof

    @property
    def holdout_path(self) -> Path:
        return TrialLayout(self.output_dir).holdout

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"


def load_data(cfg: TrainConfig, source: str | None = None) -> FERData:
    """Load the configuration's data source (or ``source``) at its size and channels."""
    from ferray.data import load_source

    return load_source(source or cfg.data.source, size=cfg.data.size, channels=cfg.data.channels)


def make_fold_plan(cfg: TrainConfig, data: FERData) -> FoldPlan:
    from ferray.data import plan_folds

    return plan_folds(
        data,
        cfg.folds.k,
        seed=cfg.folds.seed,
        holdout=cfg.folds.holdout,
        group_by_subject=cfg.folds.group_by_subject,
        group_duplicates=cfg.folds.group_duplicates,
    )


def build_trainer(
    cfg: TrainConfig,
    data_ref: Any,
    plan: FoldPlan,
    resources: ResourcePlan,
    *,
    output_dir: str,
    name: str = "checkpoints",
    storage_path: str | None = None,
    callbacks: list | None = None,
    started_at: float | None = None,
    latency_at_start: bool = False,
):
    """The Ray Train trainer of one trial: ``plan.k`` workers, worker ``i`` trains fold ``i``.

    ``data_ref`` is an object reference (or the :class:`FERData` itself) every worker reads;
    prediction files go to ``output_dir`` and checkpoints to ``storage_path/name``.
    ``started_at`` (``time.time()``) is when the trial began, the origin of the fold workers'
    start-up report (default: when this trainer is built). ``latency_at_start``: fold 0 reports
    the fresh model's latency with every epoch (a latency objective needs it from the first
    rung on), not only the trained model's with the last.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.config import LoggingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from ferray.training._backend import process_group_config
    from ferray.training._worker import fold_worker

    res = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker:
        res["GPU"] = resources.gpus_per_worker
    return _trainer_class(DataParallelTrainer)(
        fold_worker,
        train_loop_config={
            "train": cfg.model_dump(mode="json"),
            "data": data_ref,
            "folds": plan.fold,
            "fingerprint": plan.data_fingerprint,
            "threads": resources.threads_per_worker,
            "output_dir": output_dir,
            "submitted_at": time.time(),
            "trial_started_at": started_at,
            "latency_at_start": latency_at_start,
            # Where Train keeps this run's checkpoints; on local or shared storage the workers
            # write their epoch state straight there (see fold_worker's checkpoint block).
            "checkpoint_dir": None
            if "://" in str(storage_path or output_dir)
            else os.path.join(os.path.abspath(str(storage_path or output_dir)), name),
        },
        # gloo on GPUs too: the folds train independent models, and their only collective is the
        # per-epoch exchange of metrics and predictions (small pickled objects, on CPU); nccl would
        # also fail on a worker given a GPU resource on a node without CUDA. Not Ray's TorchConfig:
        # its module imports torch in this process and in the Train controller.
        backend_config=process_group_config(),
        scaling_config=ScalingConfig(
            num_workers=plan.k,
            use_gpu=bool(resources.gpus_per_worker),
            resources_per_worker=res,
            placement_strategy=resources.ray_placement,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path or output_dir,
            failure_config=FailureConfig(max_failures=cfg.resources.max_failures),
            # One epoch checkpoint per trial: Train writes its list of checkpoints (the run's
            # snapshot) naming the new one before deleting the old, so the previous epoch stays
            # until the new one is whole (ferray.run.retention: what ended trials keep).
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )


def _trainer_class(base):
    """The trainer class without Ray Train's placement-group cleaner actor.

    The cleaner asks Ray's state API whether the run's controller is alive and frees the
    workers' placement group when the answer is "not found"; under load, or with two Ray
    instances on one machine, that answer came for live controllers and a running trial lost
    its workers ("placement group was removed"). ferray frees placement groups itself: a
    standalone run's go with its job, and a sweep removes a trial's when Tune ends it
    (:mod:`ferray.search._reaper`). Without the cleaner no state API (dashboard) is needed.
    """
    from ferray.runtime.compat import trainer_without_pg_cleaner

    return trainer_without_pg_cleaner(base)


def queue_take(queue, timeout: float) -> list:
    """Everything in a Ray ``Queue`` now, waiting at most ``timeout`` seconds for a first item."""
    from ray.util.queue import Empty

    items = []
    try:
        items.append(queue.get(block=timeout > 0, timeout=timeout if timeout > 0 else None))
    except Empty:
        return items
    size = queue.qsize()
    if size:
        items.extend(queue.get_nowait_batch(size))
    return items


def _progress_callback(queue):
    from ray.train.v2.api.callback import UserCallback

    class _Forward(UserCallback):
        """Runs in the Train controller: forwards rank 0's report to the driver's queue."""

        def after_report(self, run_context, metrics, checkpoint):
            queue.put(dict(metrics[0]), timeout=60)

    return _Forward()


def _format_report(r: dict) -> str:
    parts = [f"epoch {r['epoch']:>3}"]
    for name in ("accuracy", "macro_f1", "loss", "au_f1"):
        if f"val_{name}_mean" in r:
            parts.append(f"{name} {r[f'val_{name}_mean']:.4f} ± {r[f'val_{name}_std']:.4f}")
    parts.append(f"train_loss {r['train_loss_mean']:.4f}")
    parts.append(f"{r['epoch_seconds']:.1f}s")
    if r.get("final"):
        tail = [f"{k} {v:.4f}" for k, v in r.items() if k.startswith(("oof_", "holdout_")) and isinstance(v, float)]
        parts.append("| " + ", ".join(tail))
    return "  ".join(parts)


def train(
    config: TrainConfig | str | os.PathLike | dict,
    *,
    source: str | None = None,
    data: FERData | None = None,
    output_dir: str | os.PathLike | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    echo=print,
    limits: StallLimits | None = None,
) -> TrainResult:
    """Train one configuration on every fold, the folds in parallel on Ray Train.

    Args:
        config: a :class:`TrainConfig`, a YAML path, or a dict of the same keys.
        source: overrides ``data.source``.
        data: an already loaded dataset, used instead of any source.
        output_dir: where checkpoints and prediction files go (default ``runs/train-<time>``).
        address: a Ray cluster to connect to; default: ``RAY_ADDRESS`` or a new local Ray.
        num_cpus: CPUs of a new local Ray (default: all).
        progress: print a line per epoch with fold-mean ± fold-std metrics.
        limits: how long the run may go without an epoch report (default :class:`StallLimits`:
            15 min to the first, then max(5 min, 5x the longest epoch)).

    Raises:
        ConfigError: invalid configuration or a trial that could never be placed.
        DataError: unusable data.
        TrainingFailed: the trial stopped (e.g. the loss became NaN) or stalled.
    """
    timings: dict[str, float] = {}
    limits = limits or StallLimits()
    t0 = time.perf_counter()
    if isinstance(config, (str, os.PathLike)):
        cfg = load_train_config(config)
    elif isinstance(config, dict):
        from ferray._config import validate_model

        cfg = validate_model(TrainConfig, config)
    else:
        cfg = config
    from ferray.training.models import check_backbone

    check_backbone(cfg.model.backbone)
    if data is None:
        data = load_data(cfg, source)
    if cfg.model.head != "emotion" and data.aus is None:
        raise ConfigError(f"model.head: '{cfg.model.head}' needs action-unit labels but {data.origin} has none")
    plan = make_fold_plan(cfg, data)
    timings["load_data"] = time.perf_counter() - t0

    out = Path(output_dir or Path("runs") / datetime.now().strftime("train-%Y%m%d-%H%M%S")).absolute()
    out.mkdir(parents=True, exist_ok=True)
    plan.save(TrialLayout(out).root / TrialLayout.FOLDS)
    (out / "config.yaml").write_text(_dump_yaml(cfg))

    t = time.perf_counter()
    import ray

    ensure_ray(address, num_cpus=num_cpus)
    timings["ray_start"] = time.perf_counter() - t
    resources = plan_resources(
        plan.k,
        nodes=ray_nodes(),
        cpus_per_worker=cfg.resources.cpus_per_worker,
        gpus_per_worker=cfg.resources.gpus_per_worker,
        folds_per_gpu=cfg.resources.folds_per_gpu,
        placement=cfg.resources.placement,
    )
    t = time.perf_counter()
    data_ref = ray.put(data)
    timings["data_put"] = time.perf_counter() - t

    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    trainer = build_trainer(cfg, data_ref, plan, resources, output_dir=str(out), callbacks=[_progress_callback(queue)])
    t = time.perf_counter()
    try:
        result = fit_watched(
            trainer,
            lambda timeout: queue_take(queue, timeout),
            (lambda report: echo(_format_report(report))) if progress else (lambda report: None),
            limits,
        )
    except TrainingStalled as exc:
        raise TrainingFailed(f"training stopped: {exc}") from None
    except Exception as exc:  # Ray wraps worker errors; show the reason, not Ray's traceback.
        raise TrainingFailed(f"training stopped: {failure_reason(exc)}") from exc
    finally:
        try:
            queue.shutdown(force=True)
        except Exception:  # noqa: BLE001 - gone with Ray
            pass
    timings["fit"] = time.perf_counter() - t
    history = _history_of(result)
    first = history[0] if history else {}
    for key in ("worker_start_s", "data_get_s"):
        timings[key.removesuffix("_s")] = first.get(key, float("nan"))
    timings["compute"] = sum(r.get("epoch_seconds", 0.0) for r in history)
    timings["total"] = time.perf_counter() - t0
    return TrainResult(history=history, output_dir=out, plan=plan, resources=resources, timings=timings)


def _history_of(result) -> list[dict]:
    """Every epoch's report, read back from the last checkpoint's saved history."""
    from ferray.training.checkpoint import load_fold_state

    checkpoint = result.checkpoint
    if checkpoint is None:
        return [dict(result.metrics)] if result.metrics else []
    with checkpoint.as_directory() as d:
        state = load_fold_state(Path(d) / "fold_0.pt")
    return list(state["history"])


def failure_reason(exc: BaseException) -> str:
    """The innermost worker error message of a Ray Train failure."""
    seen = set()
    current: BaseException | None = exc
    message = str(exc)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        errors = getattr(current, "worker_failures", None) or getattr(current, "worker_exceptions", None)
        if isinstance(errors, dict) and errors:
            current = next(iter(errors.values()))
            message = str(current)
            continue
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
        message = str(current)
    lines = [ln for ln in message.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _dump_yaml(cfg: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
