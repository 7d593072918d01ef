"""The Ray Train worker loop: worker ``i`` trains fold ``i`` of the plan.

Every epoch the workers exchange their validation metrics with a collective, so each
reports the same fold mean and standard deviation through :func:`ray.train.report`,
together with a checkpoint directory holding every fold's state (Ray merges the workers'
files into one checkpoint). Inside a Tune trial, ``TuneReportCallback`` forwards rank 0's
report. After the last epoch the fold models predict their out-of-fold rows and the
holdout (with test-time augmentation); rank 0 writes ``oof.parquet``, ``holdout.parquet``
and ``metrics.json`` to the output directory. Rank 0 also reports the model's cost
(:mod:`ferray.training.cost`) with every epoch: parameters and MACs of the model it built
(and its latency when ``latency_at_start``), and with the last epoch the trained model's
latency at batch 1 and 64 on its node's CPU.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ferray._io import append_line, atomic_write, atomic_write_json, resolve_fs
from ferray.metrics import bootstrap_metrics, per_class_metrics
from ferray.run.layout import TrialLayout
from ferray.run.predictions import Predictions, write_predictions
from ferray.run.weights import WeightsMeta
from ferray.training.config import TrainConfig

if TYPE_CHECKING:
    from ferray.data import FERData
    from ferray.training._fold import FoldTrainer

# Light on purpose: the trial driver imports this module only to name ``fold_worker``, so
# torch, timm and albumentations load inside :func:`fold_worker`, in the worker process.

__all__ = ["fold_worker", "summarise", "METRICS", "STARTUP_KEYS", "HEAVY_MODULES"]

METRICS = ("loss", "accuracy", "macro_f1", "au_f1")

#: Start-up phases a fold worker reports in its first epoch (seconds; the fold that started last):
#: ``trial_setup_s`` trial driver entry -> trainer submitted (``ferray search`` only);
#: ``worker_start_s`` submitted -> ``fold_worker`` entered, of which ``worker_spawn_s``
#: until the worker process existed (Train controller, placement group, process spawn) and
#: ``worker_process_s`` the process's own start (Ray, torch, the process-group rendezvous);
#: ``import_s`` timm, albumentations and ferray's training code; ``data_get_s`` the dataset
#: from the object store; ``model_build_s`` model, optimiser and loss (on fold 0 also the
#: model's cost); ``first_batch_s`` the first training step; ``startup_s`` the whole, trial
#: start (or submission) -> first step done. Also ``startup_cpu_s``: CPU seconds the k fold
#: worker processes spent until their first step (summed), and ``heavy_modules``: modules of
#: :data:`HEAVY_MODULES` a fold worker had imported by the end of its first epoch (the union;
#: ``[]`` is the goal).
STARTUP_KEYS = (
    "trial_setup_s",
    "worker_start_s",
    "worker_spawn_s",
    "worker_process_s",
    "import_s",
    "data_get_s",
    "model_build_s",
    "first_batch_s",
    "startup_s",
)
#: Modules a fold worker never needs; each costs seconds of every trial's start-up.
HEAVY_MODULES = ("sklearn", "optuna", "wandb", "tensorboard", "torch.utils.tensorboard")

logger = logging.getLogger(__name__)


class TrialError(RuntimeError):
    """A trial stopped for a reason the user should see (NaN loss, out of memory)."""


def _gather(obj):
    """All workers' ``obj``, in rank order (no collective when there is one worker)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def summarise(per_fold: list[dict], epoch: int, metric: str) -> dict:
    """Fold-mean and fold-std of each metric, plus per-fold values, as a flat report."""
    from ferray.training._fold import fold_stats

    report: dict = {"epoch": epoch}
    for name in METRICS:
        values = [f["val"][name] for f in per_fold if name in f["val"]]
        if len(values) != len(per_fold) or not values:
            continue
        mean, std = fold_stats(values)
        report[f"val_{name}_mean"] = mean
        report[f"val_{name}_std"] = std
        for f, v in zip(per_fold, values):
            report[f"val_{name}_fold{f['fold']}"] = float(v)
    report["metric"] = report[f"val_{metric}_mean"]
    report["train_loss_mean"] = float(np.mean([f["train_loss"] for f in per_fold]))
    report["lr"] = float(per_fold[0]["lr"])
    report["epoch_seconds"] = float(max(f["seconds"] for f in per_fold))
    report["images_per_second"] = float(sum(f["images"] / max(f["seconds"], 1e-9) for f in per_fold))
    started = [f for f in per_fold if f.get("startup_s") is not None]
    if started:  # the phases of the fold that started last, so they add up to its startup_s
        slowest = max(started, key=lambda f: f["startup_s"])
        report.update({key: float(slowest[key]) for key in STARTUP_KEYS if slowest.get(key) is not None})
    if any("startup_cpu_s" in f for f in per_fold):
        report["startup_cpu_s"] = float(sum(f.get("startup_cpu_s", 0.0) for f in per_fold))
    if any("heavy_modules" in f for f in per_fold):
        report["heavy_modules"] = sorted({m for f in per_fold for m in f.get("heavy_modules", [])})
    return report


def _process_started_at() -> float | None:
    """When this process was created (``time.time()`` clock), or None when unknown."""
    try:
        import psutil  # a Ray dependency

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - a timing detail is never worth a failed trial
        return None


def _startup_report(marks: dict, config: dict, first_step_at: float, first_step_cpu_s: float) -> dict:
    """The start-up keys (see :data:`STARTUP_KEYS`) of this worker, from its time marks."""
    submitted = config.get("submitted_at", marks["entered"])
    trial_start = config.get("trial_started_at") or submitted
    spawned = max(marks.get("process_created") or submitted, submitted)
    out = {
        "worker_start_s": marks["entered"] - submitted,
        "worker_spawn_s": min(spawned, marks["entered"]) - submitted,
        "worker_process_s": marks["entered"] - min(spawned, marks["entered"]),
        "import_s": marks["imported"] - marks["entered"],
        "data_get_s": marks["data"] - marks["imported"],
        "model_build_s": marks["built"] - marks["data"],
        "first_batch_s": first_step_at - marks["built"],
        "startup_s": first_step_at - trial_start,
        "startup_cpu_s": first_step_cpu_s,
        "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
    }
    if config.get("trial_started_at"):
        out["trial_setup_s"] = submitted - trial_start
    return {k: (max(0.0, float(v)) if isinstance(v, float) else v) for k, v in out.items()}


def _improved(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def _quiet_ray_train() -> None:
    """Ray Train logs every report at INFO on loggers named by file path, which its own
    log-level setting does not reach; one line per fold per epoch buries ferray's output."""
    from ferray.runtime.compat import quiet_train_context_logger

    quiet_train_context_logger()


def fold_worker(config: dict) -> None:
    """Entry point of each Ray Train worker (``train_loop_per_worker``)."""
    marks = {"entered": time.time(), "process_created": _process_started_at()}
    import ray
    import ray.train
    import torch

    from ferray.training._fold import FoldTrainer, NonFiniteLossError
    from ferray.training.checkpoint import load_fold_state, save_fold_state

    _quiet_ray_train()

    marks["imported"] = time.time()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    cfg = TrainConfig.model_validate(config["train"])
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    marks["data"] = time.time()
    data: FERData
    fold_of = np.asarray(config["folds"])
    threads = int(config.get("threads") or 1)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.run.seed * 1009 + rank)  # dropout and other in-model randomness
    device = torch.device("cpu")
    # A GPU only when Ray gave this worker one and CUDA sees it: a node that declares GPUs it
    # lacks (ray start --num-gpus) trains on CPU.
    if ray.get_gpu_ids() and torch.cuda.is_available():
        import ray.train.torch

        device = ray.train.torch.get_device()
    train_index = np.flatnonzero((fold_of != rank) & (fold_of >= 0))
    val_index = np.flatnonzero(fold_of == rank)
    trainer = FoldTrainer(cfg, data, train_index, val_index, fold=rank, device=device)
    # What the architecture costs, reported with every epoch (a multi-objective scheduler ranks
    # each rung's vectors by it): rank 0 measures it on the fresh model, latency only when an
    # objective needs it; the last epoch measures the trained model again (see _trial_cost).
    cost = _trial_cost(trainer, latency=bool(config.get("latency_at_start"))) if rank == 0 else {}
    marks["built"] = time.time()
    startup: dict | None = None  # this process's start-up, reported with its first epoch
    epoch_log = _EpochLog(config.get("output_dir")) if rank == 0 else None

    history: list[dict] = []
    best, best_epoch, since_best = None, 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_fold_state(Path(d) / f"fold_{rank}.pt", device)
        trainer.load_state_dict(state["trainer"])
        history, best, best_epoch, since_best = (
            state["history"],
            state["best"],
            state["best_epoch"],
            state["since_best"],
        )
        # Say again what the checkpointed epochs reported: a checkpoint is registered before
        # the reports reach a sweep's driver, so a driver killed in between never recorded
        # them. Receivers keep one row (and one Optuna value) per epoch.
        for past in history:
            ray.train.report(past)
        if history and history[-1].get("final"):
            return  # the run had ended: the restarted trial ends the same way

    metric = cfg.run.metric
    for epoch in range(trainer.epoch, cfg.run.epochs):
        error = None
        try:
            stats = trainer.train_epoch(epoch)
            val = trainer.evaluate()
            if startup is None:
                startup = _startup_report(
                    marks, config, trainer.first_step_at or time.time(), trainer.first_step_cpu_s or time.process_time()
                )
                started = startup
            else:
                started = {}
            mine = {
                "fold": rank,
                "val": val,
                "train_loss": stats.train_loss,
                "lr": stats.lr,
                "seconds": stats.seconds,
                "images": stats.images,
                **started,
            }
        except NonFiniteLossError as exc:
            error, mine = str(exc), None
        except torch.cuda.OutOfMemoryError:
            error, mine = (
                (
                    f"fold {rank}: GPU out of memory at batch size {cfg.run.batch_size}, image size "
                    f"{trainer.size}x{trainer.size}; lower run.batch_size or data.size"
                ),
                None,
            )
        gathered = _gather({"error": error, "stats": mine})
        errors = [g["error"] for g in gathered if g["error"]]
        if errors:
            raise TrialError(errors[0])
        per_fold = [g["stats"] for g in gathered]
        report = summarise(per_fold, epoch + 1, metric)
        report.update(cost)
        if _improved(report["metric"], best, metric):
            best, best_epoch, since_best = report["metric"], epoch + 1, 0
        else:
            since_best += 1
        patience = cfg.run.early_stopping_patience
        stopped_early = patience is not None and since_best >= patience
        done = stopped_early or epoch + 1 == cfg.run.epochs
        report.update(best_metric=best, best_epoch=best_epoch, final=done, stopped_early=stopped_early)
        if done:
            report.update(_final_outputs(trainer, data, fold_of, rank, cfg, config))
            if rank == 0:
                report.update(_trial_cost(trainer, latency=True))
        history.append(report)
        # Train registers an epoch's checkpoint only once every fold reported its file whole,
        # and drops the previous one only then (CheckpointConfig(num_to_keep=1)): a kill
        # mid-write leaves the last complete epoch to resume from. The state is serialised on
        # this thread (the next epoch changes it), without fsync (Ray's copies never sync
        # either). On local or shared storage it goes straight into the run's checkpoint
        # folder (one write, no copy); elsewhere (s3://...) to a scratch folder that Train
        # uploads on its own thread while the next epoch trains, then deletes.
        state = {
            "trainer": trainer.state_dict(),
            "history": history,
            "best": best,
            "best_epoch": best_epoch,
            "since_best": since_best,
        }
        name = f"epoch_{epoch + 1:04d}"
        direct = config.get("checkpoint_dir")
        if direct and os.path.isdir(direct):  # not on a node that lacks the shared folder
            folder = os.path.join(direct, name)
            save_fold_state(state, Path(folder) / f"fold_{rank}.pt", durable=False)
            ray.train.report(
                report,
                checkpoint=ray.train.Checkpoint.from_directory(folder),
                checkpoint_dir_name=name,
                checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD,
            )
        else:
            tmp = tempfile.mkdtemp(prefix=f"ferray-ckpt-{rank}-")
            save_fold_state(state, Path(tmp) / f"fold_{rank}.pt", durable=False)
            ray.train.report(
                report,
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
                checkpoint_dir_name=name,
                checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
                delete_local_checkpoint_after_upload=True,
            )
        if epoch_log is not None:
            epoch_log.append(epoch + 1, report["epoch_seconds"])
        if done:
            break


def _trial_cost(trainer: FoldTrainer, *, latency: bool) -> dict:
    """Parameters, MACs and (``latency``) CPU latency of the fold's evaluated model
    (:func:`ferray.training.cost.measure_cost`; every fold shares the architecture)."""
    from ferray.training.cost import measure_cost

    return measure_cost(trainer.eval_model, (trainer.channels, trainer.size, trainer.size), latency=latency)


#: Append-only record of every epoch a trial trained (recomputed epochs appear twice).
EPOCH_LOG = "epochs.jsonl"  # = ferray.run.layout.TrialLayout.EPOCHS


class _EpochLog:
    """Appends one line per trained epoch to a trial's ``epochs.jsonl`` (``output_dir`` None: no log).

    A failed append never fails the trial, but it is not silent either: the record of
    every epoch trained (recomputations after a resume included) would then miss epochs, so
    the first failure is logged as a warning naming the file and the error; later failures
    of this worker only at debug level.
    """

    def __init__(self, output_dir: str | os.PathLike | None) -> None:
        self.output_dir = output_dir
        self.warned = False

    def append(self, epoch: int, seconds: float) -> bool:
        """Append ``epoch``'s line; False (and a log record) when the file could not be written."""
        if not self.output_dir:
            return True

        line = json.dumps(
            {"epoch": epoch, "seconds": round(float(seconds), 3), "time": time.time(), "pid": os.getpid()}
        )
        remote = "://" in str(self.output_dir)
        target = (
            f"{str(self.output_dir).rstrip('/')}/{TrialLayout.EPOCHS}"
            if remote
            else TrialLayout(Path(self.output_dir)).epochs
        )
        try:
            if not remote:
                append_line(target, line)
                return True
            # Object stores cannot append: rewrite the whole (small) log atomically.
            fs, path = resolve_fs(target)
            try:
                with fs.open_input_stream(path) as f:
                    old = f.read()
            except (FileNotFoundError, OSError):
                old = b""
            atomic_write(target, old + (line + "\n").encode())
            return True
        except OSError as exc:  # a bookkeeping line is never worth a failed trial
            level = logging.DEBUG if self.warned else logging.WARNING
            logger.log(
                level,
                "could not append epoch %d to %s: %s; this trial's record of trained epochs will miss it%s",
                epoch,
                target,
                exc,
                "" if self.warned else " (further failures of this worker are logged at debug level)",
            )
            self.warned = True
            return False


def _intervals(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """Accuracy and macro-F1 with their bootstrap 95% intervals (seed 0), as JSON-ready dicts."""

    return {m: ci._asdict() for m, ci in bootstrap_metrics(labels, probs, num_classes=num_classes, seed=0).items()}


def _final_outputs(
    trainer: FoldTrainer, data: FERData, fold_of: np.ndarray, rank: int, cfg: TrainConfig, config: dict
) -> dict:
    """Predict out-of-fold and holdout rows with TTA; rank 0 writes the prediction files."""
    import ray

    start = time.perf_counter()
    holdout_index = np.flatnonzero(fold_of < 0)
    tta = list(cfg.augment.tta)
    _save_fold_weights(trainer, data, rank, cfg, config)
    val_probs, val_au = trainer.predict(trainer.val_index, tta)
    hold_probs, hold_au = (
        trainer.predict(holdout_index, tta)
        if len(holdout_index)
        else (np.zeros((0, data.num_classes), np.float32), None)
    )
    gathered = _gather((rank, val_probs, val_au, hold_probs, hold_au, ray.get_runtime_context().get_node_id()))
    # Rank 0 writes the files; every rank then reports (and checkpoints) the same figures.
    return _gather(_write_outputs(gathered, trainer, data, fold_of, tta, config, start) if rank == 0 else None)[0]


def _save_fold_weights(trainer: FoldTrainer, data: FERData, rank: int, cfg: TrainConfig, config: dict) -> None:
    """This fold's evaluated weights, for the ensemble, distillation and export stages."""
    from ferray.training.weights import save_weights

    output_dir = config.get("output_dir")
    if not output_dir:
        return
    meta = WeightsMeta(
        train=cfg.model_dump(mode="json"),
        num_classes=int(data.num_classes),
        in_chans=int(trainer.channels),
        img_size=int(trainer.size),
        class_names=list(data.class_names),
        fold=int(rank),
        k=int(np.max(config["folds"])) + 1,
        ema=trainer.ema is not None,
        normalise={"mean": 0.5, "std": 0.5},
        data_fingerprint=config.get("fingerprint", ""),
    ).to_dict()
    path = (
        str(TrialLayout(Path(str(output_dir))).weights(rank))
        if "://" not in str(output_dir)
        else f"{str(output_dir).rstrip('/')}/{TrialLayout.WEIGHTS}/fold_{rank}.safetensors"
    )
    save_weights(trainer.eval_model, path, meta)


def _write_outputs(
    gathered: list, trainer: FoldTrainer, data: FERData, fold_of: np.ndarray, tta: list[str], config: dict, start: float
) -> dict:
    out: dict = {}
    holdout_index = np.flatnonzero(fold_of < 0)
    k = len(gathered)
    meta = {
        "class_names": list(data.class_names),
        "k": k,
        "data_fingerprint": config.get("fingerprint", ""),
        "tta": tta,
    }
    has_au = gathered[0][2] is not None
    oof_rows = [np.flatnonzero(fold_of == f) for f, *_ in gathered]
    rows = np.concatenate(oof_rows)
    folds = np.concatenate([np.full(len(r), f) for r, (f, *_) in zip(oof_rows, gathered)])
    probs = np.concatenate([g[1] for g in gathered])
    au = np.concatenate([g[2] for g in gathered]) if has_au else None
    order = np.argsort(rows, kind="stable")
    oof = Predictions(
        rows[order],
        data.ids[rows[order]],
        folds[order],
        data.labels[rows[order]],
        probs[order],
        au[order] if au is not None else None,
        {**meta, "kind": "oof"},
    )
    hold_rows = np.tile(holdout_index, k)
    hold = Predictions(
        hold_rows,
        data.ids[hold_rows],
        np.repeat([g[0] for g in gathered], len(holdout_index)),
        data.labels[hold_rows],
        np.concatenate([g[3] for g in gathered]),
        np.concatenate([g[4] for g in gathered]) if has_au and len(holdout_index) else None,
        {**meta, "kind": "holdout"},
    )
    output_dir = str(config["output_dir"]).rstrip("/")
    write_predictions(oof, f"{output_dir}/oof.parquet")
    write_predictions(hold, f"{output_dir}/holdout.parquet")

    oof_metrics = trainer.metrics_of(oof.rows, oof.probs, oof.au_probs)
    out.update({f"oof_{name}": float(v) for name, v in oof_metrics.items()})
    summary = {
        "class_names": list(data.class_names),
        "oof": oof_metrics,
        "oof_per_class": per_class_metrics(oof.labels, oof.probs, list(data.class_names)),
        # the Ray node each fold trained on (where a trial's workers were placed)
        "fold_nodes": [{"fold": int(g[0]), "node_id": g[5]} for g in gathered],
        # seeded bootstrap 95% intervals of accuracy and macro-F1 (`ferray status` shows them)
        "oof_ci": _intervals(oof.labels, oof.probs, data.num_classes),
    }
    if len(holdout_index):
        mean_probs = np.mean([g[3] for g in gathered], axis=0)
        mean_au = np.mean([g[4] for g in gathered], axis=0) if has_au else None
        hold_metrics = trainer.metrics_of(holdout_index, mean_probs, mean_au)
        out.update({f"holdout_{name}": float(v) for name, v in hold_metrics.items()})
        summary["holdout"] = hold_metrics
        summary["holdout_per_class"] = per_class_metrics(data.labels[holdout_index], mean_probs, list(data.class_names))
        # Holdout rows with an exact or near copy among the training rows score memory, not
        # generalisation: report the rows without one too, and bootstrap intervals.
        from ferray.data import clean_holdout_mask

        clean = clean_holdout_mask(data, fold_of)[holdout_index]
        if not clean.all():
            clean_metrics = trainer.metrics_of(
                holdout_index[clean], mean_probs[clean], mean_au[clean] if mean_au is not None else None
            )
            out.update({f"holdout_clean_{name}": float(v) for name, v in clean_metrics.items()})
            summary["holdout_clean"] = {
                **clean_metrics,
                "rows": int(clean.sum()),
                "rows_with_duplicate": int((~clean).sum()),
            }
            summary["holdout_clean_ci"] = _intervals(
                data.labels[holdout_index[clean]], mean_probs[clean], data.num_classes
            )
        summary["holdout_ci"] = _intervals(data.labels[holdout_index], mean_probs, data.num_classes)
    atomic_write_json(f"{output_dir}/metrics.json", summary)
    out["predict_seconds"] = time.perf_counter() - start
    return out
