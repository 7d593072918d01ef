"""The Ray Train worker loop: worker ``i`` trains fold ``i`` of the plan.

Every epoch the workers exchange their validation metrics with a collective, so each
reports the same fold mean and standard deviation through :func:`ray.train.report`,
together with a checkpoint directory holding every fold's state (Ray merges the workers'
files into one checkpoint). Inside a Tune trial, ``TuneReportCallback`` forwards rank 0's
report. After the last epoch the fold models predict their out-of-fold rows and the
holdout (with test-time augmentation); rank 0 writes ``oof.parquet``, ``holdout.parquet``
and ``metrics.json`` to the output directory.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ferray.data import FERData
from ferray.training._fold import FoldTrainer, NonFiniteLossError, fold_stats
from ferray.training.checkpoint import load_fold_state, save_fold_state
from ferray.training.config import TrainConfig
from ferray.training.metrics import per_class_metrics
from ferray.training.outputs import Predictions, write_json_atomic, write_predictions

__all__ = ["fold_worker", "summarise", "METRICS"]

METRICS = ("loss", "accuracy", "macro_f1", "au_f1")


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
    for key in ("worker_start_s", "data_get_s"):
        if key in per_fold[0]:
            report[key] = float(max(f[key] for f in per_fold))
    return report


def _improved(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def _quiet_ray_train() -> None:
    """Ray Train logs every report at INFO on loggers named by file path, which its own
    log-level setting does not reach; one line per fold per epoch buries ferray's output."""
    from ferray._ray_compat import quiet_train_context_logger

    quiet_train_context_logger()


def fold_worker(config: dict) -> None:
    """Entry point of each Ray Train worker (``train_loop_per_worker``)."""
    import ray
    import ray.train

    _quiet_ray_train()

    started = time.time()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    cfg = TrainConfig.model_validate(config["train"])
    data = config["data"]
    t = time.perf_counter()
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    data_get = time.perf_counter() - t
    startup = {"worker_start_s": started - config.get("submitted_at", started), "data_get_s": data_get}
    data: FERData
    fold_of = np.asarray(config["folds"])
    threads = int(config.get("threads") or 1)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.run.seed * 1009 + rank)  # dropout and other in-model randomness
    device = torch.device("cpu")
    if cfg.resources.gpus_per_worker > 0 and torch.cuda.is_available():
        import ray.train.torch

        device = ray.train.torch.get_device()
    train_index = np.flatnonzero((fold_of != rank) & (fold_of >= 0))
    val_index = np.flatnonzero(fold_of == rank)
    trainer = FoldTrainer(cfg, data, train_index, val_index, fold=rank, device=device)

    history: list[dict] = []
    best, best_epoch, since_best = None, 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_fold_state(Path(d) / f"fold_{rank}.pt", device)
        trainer.load_state_dict(state["trainer"])
        history, best, best_epoch, since_best = (state["history"], state["best"], state["best_epoch"],
                                                 state["since_best"])
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
            mine = {"fold": rank, "val": val, "train_loss": stats.train_loss, "lr": stats.lr,
                    "seconds": stats.seconds, "images": stats.images, **startup}
        except NonFiniteLossError as exc:
            error, mine = str(exc), None
        except torch.cuda.OutOfMemoryError:
            error, mine = (f"fold {rank}: GPU out of memory at batch size {cfg.run.batch_size}, image size "
                           f"{trainer.size}x{trainer.size}; lower run.batch_size or data.size"), None
        gathered = _gather({"error": error, "stats": mine})
        errors = [g["error"] for g in gathered if g["error"]]
        if errors:
            raise TrialError(errors[0])
        per_fold = [g["stats"] for g in gathered]
        report = summarise(per_fold, epoch + 1, metric)
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
        history.append(report)
        with tempfile.TemporaryDirectory() as tmp:
            state = {"trainer": trainer.state_dict(), "history": history, "best": best,
                     "best_epoch": best_epoch, "since_best": since_best}
            save_fold_state(state, Path(tmp) / f"fold_{rank}.pt")
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"epoch_{epoch + 1:04d}")
        if rank == 0:
            _log_epoch(config.get("output_dir"), epoch + 1, report["epoch_seconds"])
        if done:
            break


#: Append-only record of every epoch a trial trained (recomputed epochs appear twice).
EPOCH_LOG = "epochs.jsonl"  # = ferray.layout.TrialLayout.EPOCHS


def _log_epoch(output_dir: str | None, epoch: int, seconds: float) -> None:
    if not output_dir or "://" in str(output_dir):
        return
    from ferray._io import append_line
    from ferray.layout import TrialLayout

    line = json.dumps({"epoch": epoch, "seconds": round(float(seconds), 3), "time": time.time(), "pid": os.getpid()})
    try:
        append_line(TrialLayout(Path(output_dir)).epochs, line)
    except OSError:  # a bookkeeping line is never worth a failed trial
        pass


def _final_outputs(trainer: FoldTrainer, data: FERData, fold_of: np.ndarray, rank: int,
                   cfg: TrainConfig, config: dict) -> dict:
    """Predict out-of-fold and holdout rows with TTA; rank 0 writes the prediction files."""
    start = time.perf_counter()
    holdout_index = np.flatnonzero(fold_of < 0)
    tta = list(cfg.augment.tta)
    _save_fold_weights(trainer, data, rank, cfg, config)
    val_probs, val_au = trainer.predict(trainer.val_index, tta)
    hold_probs, hold_au = (trainer.predict(holdout_index, tta) if len(holdout_index)
                           else (np.zeros((0, data.num_classes), np.float32), None))
    gathered = _gather((rank, val_probs, val_au, hold_probs, hold_au))
    # Rank 0 writes the files; every rank then reports (and checkpoints) the same figures.
    return _gather(_write_outputs(gathered, trainer, data, fold_of, tta, config, start) if rank == 0 else None)[0]


def _save_fold_weights(trainer: FoldTrainer, data: FERData, rank: int, cfg: TrainConfig, config: dict) -> None:
    """This fold's evaluated weights, for the ensemble, distillation and export stages."""
    from ferray.layout import TrialLayout
    from ferray.training.weights import save_weights

    output_dir = config.get("output_dir")
    if not output_dir:
        return
    meta = {"train": cfg.model_dump(mode="json"), "num_classes": int(data.num_classes),
            "in_chans": int(trainer.channels), "img_size": int(trainer.size),
            "class_names": list(data.class_names), "fold": int(rank), "k": int(np.max(config["folds"])) + 1,
            "ema": trainer.ema is not None, "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": config.get("fingerprint", "")}
    path = str(TrialLayout(Path(str(output_dir))).weights(rank)) if "://" not in str(output_dir) else \
        f"{str(output_dir).rstrip('/')}/{TrialLayout.WEIGHTS}/fold_{rank}.safetensors"
    save_weights(trainer.eval_model, path, meta)


def _write_outputs(gathered: list, trainer: FoldTrainer, data: FERData, fold_of: np.ndarray, tta: list[str],
                   config: dict, start: float) -> dict:
    out: dict = {}
    holdout_index = np.flatnonzero(fold_of < 0)
    k = len(gathered)
    meta = {"class_names": list(data.class_names), "k": k, "data_fingerprint": config.get("fingerprint", ""),
            "tta": tta}
    has_au = gathered[0][2] is not None
    oof_rows = [np.flatnonzero(fold_of == f) for f, *_ in gathered]
    rows = np.concatenate(oof_rows)
    folds = np.concatenate([np.full(len(r), f) for r, (f, *_) in zip(oof_rows, gathered)])
    probs = np.concatenate([g[1] for g in gathered])
    au = np.concatenate([g[2] for g in gathered]) if has_au else None
    order = np.argsort(rows, kind="stable")
    oof = Predictions(rows[order], data.ids[rows[order]], folds[order], data.labels[rows[order]],
                      probs[order], au[order] if au is not None else None, {**meta, "kind": "oof"})
    hold_rows = np.tile(holdout_index, k)
    hold = Predictions(hold_rows, data.ids[hold_rows], np.repeat([g[0] for g in gathered], len(holdout_index)),
                       data.labels[hold_rows], np.concatenate([g[3] for g in gathered]),
                       np.concatenate([g[4] for g in gathered]) if has_au and len(holdout_index) else None,
                       {**meta, "kind": "holdout"})
    output_dir = str(config["output_dir"]).rstrip("/")
    write_predictions(oof, f"{output_dir}/oof.parquet")
    write_predictions(hold, f"{output_dir}/holdout.parquet")

    oof_metrics = trainer.metrics_of(oof.rows, oof.probs, oof.au_probs)
    out.update({f"oof_{name}": float(v) for name, v in oof_metrics.items()})
    summary = {"class_names": list(data.class_names), "oof": oof_metrics,
               "oof_per_class": per_class_metrics(oof.labels, oof.probs, list(data.class_names))}
    if len(holdout_index):
        mean_probs = np.mean([g[3] for g in gathered], axis=0)
        mean_au = np.mean([g[4] for g in gathered], axis=0) if has_au else None
        hold_metrics = trainer.metrics_of(holdout_index, mean_probs, mean_au)
        out.update({f"holdout_{name}": float(v) for name, v in hold_metrics.items()})
        summary["holdout"] = hold_metrics
        summary["holdout_per_class"] = per_class_metrics(data.labels[holdout_index], mean_probs,
                                                         list(data.class_names))
    write_json_atomic(summary, f"{output_dir}/metrics.json")
    out["predict_seconds"] = time.perf_counter() - start
    return out
