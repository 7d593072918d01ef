"""``distill_run``: train a small student on a sweep's ensemble, and compare the three.

The student is one timm backbone (``distill.student``) with the run's head, image size and
channels, trained by ONE Ray Train worker on every cross-validation row of the run's data
(and, optionally, transfer images the ensemble labels). One worker, not k: the ensemble's
OOF probabilities were each made by fold models that never saw their row, so every
cross-validation row is a leak-free target, and the student is judged on the holdout,
which neither the ensemble's targets nor the student ever trained on. Folds would only
multiply the cost and leave k students to choose from.

Outputs go to a temporary folder inside the run and are renamed to ``distill/`` at the
end, so a failed or interrupted distillation leaves the previous ``distill/`` (or none)::

    distill/
      weights/fold_0.safetensors   the student (ferray.training.weights format; load_fold_models reads it)
      config.yaml                  the student's training config
      holdout.parquet              its holdout probabilities (ferray.training.outputs format)
      distill.json                 student vs ensemble vs best single trial: accuracy, macro-F1,
                                   parameters, latency per image at batch 1 and 64
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ferray._io import json_safe, replace_folder
from ferray.errors import ConfigError, DataError, FerrayError
from ferray.layout import DistillLayout, RunLayout

__all__ = ["distill_run", "DistillResult", "DISTILL_SUMMARY"]

#: The comparison file in ``distill/``.
DISTILL_SUMMARY = DistillLayout.SUMMARY


@dataclass
class DistillResult:
    """What :func:`distill_run` returns: where the student is and how it compares."""

    output_dir: Path
    summary: dict
    history: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return DistillLayout(self.output_dir).weights(0)

    @property
    def holdout_path(self) -> Path:
        return DistillLayout(self.output_dir).holdout

    @property
    def summary_path(self) -> Path:
        return DistillLayout(self.output_dir).summary


def _check_run(run_dir: str | os.PathLike) -> RunLayout:
    layout = RunLayout(Path(run_dir).absolute())
    if not layout.root.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    if not layout.is_run():
        raise ConfigError(f"{run_dir}: not a ferray run directory (no {RunLayout.MANIFEST}); "
                          "pass the folder `ferray search` created")
    missing = [f for f in (RunLayout.SPEC, RunLayout.FOLDS) if not (layout.root / f).exists()]
    if missing:
        raise ConfigError(f"{run_dir}: {', '.join(missing)} missing; the run directory is incomplete")
    return layout


def _distill_settings(spec, overrides: dict):
    from ferray._config import validate_model
    from ferray.search import DistillConfig
    from ferray.training.models import check_backbone

    given = {k: v for k, v in overrides.items() if v is not None}
    settings = validate_model(DistillConfig, {**spec.distill.model_dump(), **given}, prefix=("distill",))
    try:
        check_backbone(settings.student)
    except ConfigError as exc:
        where = "--student" if "student" in given else "distill.student"
        raise ConfigError(f"{where}: {exc}") from None
    return settings


def student_config(base, settings) -> Any:
    """The student's :class:`TrainConfig`: the run's base config with the student's backbone.

    Kept from the base: data size and channels, the head, loss AU settings, augmentation,
    mixing, optimiser and schedule, AMP and resources. Changed: the backbone (random init,
    no backbone keyword arguments of the base's backbone), epochs, batch size, and no early
    stopping (there is no validation split to stop on).
    """
    from ferray.training.config import TrainConfig

    raw = base.model_dump(mode="json")
    raw["model"].update(backbone=settings.student, pretrained=False, backbone_kwargs={})
    raw["run"].update(epochs=settings.epochs, early_stopping_patience=None)
    if settings.batch_size:
        raw["run"]["batch_size"] = settings.batch_size
    return TrainConfig.model_validate(raw)


def _check_holdout(hold, plan, fingerprint: str, where: str) -> None:
    from ferray.data import HOLDOUT

    if hold.meta.get("data_fingerprint") != fingerprint:
        raise DataError(f"{where}: made for data {hold.meta.get('data_fingerprint')!r}, the run's data is "
                        f"{fingerprint!r}")
    if len(hold) and (hold.rows.min() < 0 or hold.rows.max() >= len(plan.fold)
                      or (plan.fold[hold.rows] != HOLDOUT).any()):
        raise DataError(f"{where}: names rows that are not holdout rows of the run's fold plan")


def _transfer_rows(layout: RunLayout, settings, data, base) -> tuple[Any, np.ndarray | None]:
    """The data with the labelled transfer images appended, and their teacher probabilities."""
    from dataclasses import replace

    from ferray.data import load_source
    from ferray.distill._teacher import label_images, read_ensemble_members

    if base.model.head != "emotion":
        raise ConfigError(f"distill.transfer: transfer images have no action-unit labels, but model.head is "
                          f"'{base.model.head}'; leave distill.transfer unset for AU heads")
    h, _, c = data.image_shape
    extra = load_source(settings.transfer, size=h, channels=c)
    if extra.image_shape != data.image_shape:
        raise DataError(f"distill.transfer: images are {extra.image_shape}, the run's data {data.image_shape}")
    probs = label_images(layout, read_ensemble_members(layout), extra.images, fingerprint=data.fingerprint())
    n = len(extra)
    combined = replace(
        data,
        images=np.concatenate([data.images, extra.images]),
        labels=np.concatenate([data.labels, probs.argmax(axis=1).astype(data.labels.dtype)]),
        ids=np.concatenate([data.ids, np.asarray([f"transfer:{i}" for i in extra.ids], dtype=object)]),
        splits=np.concatenate([data.splits, np.full(n, "train", dtype=data.splits.dtype)]),
        sources=np.concatenate([data.sources, extra.sources.astype(data.sources.dtype)]),
        soft_labels=None if data.soft_labels is None else np.concatenate([data.soft_labels, probs]),
        aus=None,
        subjects=None if data.subjects is None else np.concatenate(
            [data.subjects, np.full(n, "transfer", dtype=data.subjects.dtype)]),
    )
    return combined, probs


def _progress_callback(queue):
    from ray.train import UserCallback

    class _Forward(UserCallback):
        """Runs in the Train controller: forwards the worker's report to the driver."""

        def after_report(self, run_context, metrics, checkpoint):
            queue.put(dict(metrics[0]), timeout=10)

    return _Forward()


def _group(models: list, input_shape: tuple[int, int, int], scores: dict, **extra) -> dict:
    from ferray.distill._bench import count_parameters, group_latency

    return {**extra, **scores, "models": len(models), "params": count_parameters(models),
            "latency_ms_per_image": group_latency(models, input_shape)}


def _compare(layout: RunLayout, staging: Path, ens_holdout, members, members_error: str | None,
             student_probs: np.ndarray, holdout_index: np.ndarray, data, input_shape, echo) -> dict:
    """The ``student`` / ``ensemble`` / ``best_trial`` sections of distill.json."""
    import torch

    from ferray.distill._bench import holdout_scores
    from ferray.search import get_status
    from ferray.training.metrics import accuracy, macro_f1
    from ferray.training.outputs import read_predictions
    from ferray.training.weights import load_fold_models

    c = data.num_classes
    labels = data.labels[holdout_index]
    student_models = load_fold_models(staging)  # the file the export stage reads, read back
    out: dict = {"student": _group(student_models, input_shape,
                                   {"accuracy": accuracy(labels, student_probs),
                                    "macro_f1": macro_f1(labels, student_probs, num_classes=c)})}
    ens_scores = holdout_scores(ens_holdout, c)
    ens_scores.pop("holdout_rows")
    if members is not None:
        try:
            models = [m for t in members.trial_ids for m in load_fold_models(layout.trial(t))]
        except FerrayError as exc:  # a member's weights were pruned away: scores without costs
            members, members_error = None, str(exc)
        else:
            out["ensemble"] = _group(models, input_shape, ens_scores, method=members.method,
                                     members=list(members.trial_ids), weights=members.weights)
            del models
    if members is None:
        out["ensemble"] = {**ens_scores, "models": None, "params": None, "latency_ms_per_image": None,
                           "note": members_error}
    best = None
    try:
        best = get_status(layout.root, intervals=False)["best"]
    except FerrayError as exc:
        echo(f"distill: no best single trial ({exc})")
    if best is not None and best.get("state") == "COMPLETED":
        trial = layout.trial(best["trial_id"])
        section: dict = {"trial_id": best["trial_id"], "fold_mean_metric": best["metric"]}
        try:
            scores = holdout_scores(read_predictions(trial.holdout), c)
            scores.pop("holdout_rows")
            models = load_fold_models(trial)
            backbone = type(models[0].backbone).__name__
            cfg_file = trial.config
            if cfg_file.is_file():
                import yaml

                backbone = ((yaml.safe_load(cfg_file.read_text()) or {}).get("model") or {}).get("backbone", backbone)
            out["best_trial"] = _group(models, input_shape, scores, backbone=backbone, **section)
        except FerrayError as exc:
            out["best_trial"] = {**section, "note": str(exc)}
    else:
        out["best_trial"] = None
    out["latency"] = {"device": "cpu", "torch_threads": torch.get_num_threads(), "input": list(input_shape),
                      "batch_sizes": [1, 64],
                      "how": "torch eager, fp32, one forward pass per model (no TTA), median of timed runs "
                             "after 2 warm-up runs; a group of models costs the sum of its models"}
    return out



def distill_run(run_dir: str | os.PathLike, *, student: str | None = None, epochs: int | None = None,
                temperature: float | None = None, alpha: float | None = None, address: str | None = None,
                num_cpus: int | None = None, echo=print) -> DistillResult:
    """Distil a sweep's chosen ensemble into one small student and compare the three.

    Settings come from the run's spec (``distill:`` section, see
    :class:`~ferray.search.DistillConfig`); the keyword arguments override them. The
    ``enabled`` flag is not consulted: calling this is the request.

    Args:
        run_dir: a sweep's run directory on which ``ferray ensemble`` has run.
        student: timm backbone of the student (``distill.student``).
        epochs, temperature, alpha: override ``distill.epochs``/``temperature``/``alpha``.
        address: a Ray cluster; default ``RAY_ADDRESS`` or a new local Ray.
        num_cpus: CPUs of a new local Ray (default: all).
        echo: receives one progress line per epoch.

    Raises:
        ConfigError: not a run directory, no ensemble yet, an unknown student backbone, bad settings.
        DataError: the data, fold plan and ensemble predictions do not belong together.
        TrainingFailed: the student's training stopped, or sent no report within the spec's
            ``budget.startup_timeout_s`` / ``budget.stall_timeout_s``.

    >>> result = distill_run("runs/quickstart-20261130-120000", epochs=5)  # doctest: +SKIP
    >>> result.summary["student"]["accuracy"], result.summary["ensemble"]["accuracy"]  # doctest: +SKIP
    """
    import yaml

    from ferray.data import FoldPlan
    from ferray.distill._teacher import (
        pack_targets,
        read_ensemble_members,
        read_ensemble_predictions,
        teacher_targets,
    )
    from ferray.search import load_search_spec
    from ferray.training import ensure_ray, load_data
    from ferray.training.outputs import Predictions, write_predictions
    from ferray.training.resources import plan_resources

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # -- everything the user can get wrong, checked before Ray starts -----------------------------
    layout = _check_run(run_dir)
    spec = load_search_spec(layout.spec, check_backbones=False)
    settings = _distill_settings(spec, {"student": student, "epochs": epochs, "temperature": temperature,
                                        "alpha": alpha})
    oof, ens_holdout = read_ensemble_predictions(layout)
    base = spec.base_config()
    data = load_data(base)
    if base.model.head != "emotion" and data.aus is None:
        raise ConfigError(f"model.head: '{base.model.head}' needs action-unit labels but {data.origin} has none")
    plan = FoldPlan.load(layout.folds)
    teacher = teacher_targets(oof, plan, data, where=str(layout.ensemble / "oof.parquet"))
    fingerprint = data.fingerprint()
    _check_holdout(ens_holdout, plan, fingerprint, str(layout.ensemble / "holdout.parquet"))
    members, members_error = None, None
    try:
        members = read_ensemble_members(layout)
    except DataError as exc:
        if settings.transfer:
            raise
        members_error = str(exc)
    cfg = student_config(base, settings)
    n_classes = data.num_classes
    train_data, transfer_probs = data, None
    if settings.transfer:
        echo(f"distill: labelling transfer images from {settings.transfer} with the ensemble")
        train_data, transfer_probs = _transfer_rows(layout, settings, data, base)
    targets = pack_targets(len(train_data), n_classes, teacher.rows, teacher.probs, teacher.labels,
                           settings.temperature)
    train_index = teacher.rows
    if transfer_probs is not None:
        extra = np.arange(len(data), len(train_data))
        targets[extra] = pack_targets(len(extra), n_classes, np.arange(len(extra)), transfer_probs, None,
                                      settings.temperature)
        train_index = np.concatenate([train_index, extra])
    holdout_index = plan.holdout_index
    h, _, channels = data.image_shape
    size = cfg.data.size or h
    timings["prepare"] = time.perf_counter() - t0

    # -- one Ray Train worker ---------------------------------------------------------------------
    t = time.perf_counter()
    cluster = ensure_ray(address, num_cpus=num_cpus)
    resources = plan_resources(1, cluster.get("CPU", 0), cluster.get("GPU", 0),
                               cpus_per_worker=cfg.resources.cpus_per_worker,
                               gpus_per_worker=cfg.resources.gpus_per_worker)
    timings["ray_start"] = time.perf_counter() - t
    staging = layout.root / f".{RunLayout.DISTILL}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        weights_meta = {"train": cfg.model_dump(mode="json"), "num_classes": int(n_classes),
                        "in_chans": int(channels), "img_size": int(size), "class_names": list(data.class_names),
                        "fold": 0, "k": 1, "ema": cfg.optim.ema_decay is not None,
                        "normalise": {"mean": 0.5, "std": 0.5}, "data_fingerprint": fingerprint,
                        "distill": {"student": settings.student, "temperature": settings.temperature,
                                    "alpha": settings.alpha, "teacher": str(layout.ensemble)}}
        echo(f"distill: student {settings.student}, {len(train_index)} training images "
             f"({len(teacher.rows)} cross-validation rows"
             + (f" + {len(train_index) - len(teacher.rows)} transfer" if transfer_probs is not None else "")
             + f"), {settings.epochs} epochs, T={settings.temperature:g}, alpha={settings.alpha:g}; "
             f"1 worker x {resources.cpus_per_worker:g} CPU"
             + (f", {resources.gpus_per_worker:g} GPU" if resources.gpus_per_worker else ""))
        history, checkpoint_dir, fit_seconds = _fit(cfg, train_data, targets, train_index, holdout_index,
                                                    settings, resources, weights_meta, staging, echo,
                                                    spec.budget.stall_limits())
        timings["fit"] = fit_seconds
        from ferray.distill._worker import CHECKPOINT_HOLDOUT, CHECKPOINT_WEIGHTS

        out = DistillLayout(staging)
        out.weights_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint_dir / CHECKPOINT_WEIGHTS, out.weights(0))
        probs = np.load(checkpoint_dir / CHECKPOINT_HOLDOUT)
        shutil.rmtree(staging / "ray", ignore_errors=True)
        tta = list(cfg.augment.tta)
        write_predictions(Predictions(holdout_index, data.ids[holdout_index], np.zeros(len(holdout_index)),
                                      data.labels[holdout_index], probs, None,
                                      {"class_names": list(data.class_names), "k": 1, "data_fingerprint": fingerprint,
                                       "tta": tta, "kind": "holdout", "model": "student"}), out.holdout)
        out.config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

        t = time.perf_counter()
        echo("distill: measuring holdout scores, parameters and latency (student, ensemble, best trial)")
        summary = {
            "run": str(layout.root), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data_fingerprint": fingerprint, "holdout_rows": int(len(holdout_index)),
            **_compare(layout, staging, ens_holdout, members, members_error, probs, holdout_index, data,
                       (channels, size, size), echo),
            "teacher": {"source": str(layout.ensemble / "oof.parquet"), "oof_accuracy": teacher.agreement(),
                        "temperature": settings.temperature, "alpha": settings.alpha},
            "training": {"student": settings.student, "epochs": settings.epochs,
                         "batch_size": cfg.run.batch_size, "cross_validation_rows": int(len(teacher.rows)),
                         "transfer": settings.transfer,
                         "transfer_rows": int(len(train_index) - len(teacher.rows)), "tta": tta,
                         "workers": 1, "cpus_per_worker": resources.cpus_per_worker,
                         "gpus_per_worker": resources.gpus_per_worker, "fit_seconds": fit_seconds,
                         "history": history},
        }
        summary = json_safe(summary)
        timings["compare"] = time.perf_counter() - t
        out.summary.write_text(json.dumps(summary, indent=2))
        replace_folder(staging, layout.distill)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t0
    s = summary
    echo(f"distill: holdout accuracy student {_fmt(s['student']['accuracy'])}, ensemble "
         f"{_fmt(s['ensemble']['accuracy'])}"
         + (f", best trial {_fmt(s['best_trial'].get('accuracy'))}" if s.get("best_trial") else "")
         + f"; written to {layout.distill}")
    return DistillResult(output_dir=layout.distill, summary=summary, history=history, timings=timings)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def _fit(cfg, train_data, targets, train_index, holdout_index, settings, resources, weights_meta,
         staging: Path, echo, limits) -> tuple[list[dict], Path, float]:
    """Run the student's Ray Train job; return its history, final checkpoint folder and seconds.

    ``limits`` (the spec's ``budget.startup_timeout_s`` / ``budget.stall_timeout_s``, as for its
    trials) bounds the wait for each report."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.config import LoggingConfig
    from ray.util.queue import Queue

    from ferray._ray_compat import trainer_without_pg_cleaner
    from ferray.distill._worker import CHECKPOINT_HISTORY, student_worker
    from ferray.training import (
        TrainingFailed,
        TrainingStalled,
        failure_reason,
        fit_watched,
    )
    from ferray.training._trial import queue_take

    res = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker:
        res["GPU"] = resources.gpus_per_worker
    queue = Queue(actor_options={"num_cpus": 0})
    epochs = cfg.run.epochs

    def show(r: dict) -> None:
        line = (f"distill: epoch {r['epoch']}/{epochs}  train_loss {r['train_loss']:.4f}  "
                f"{r['epoch_seconds']:.1f}s  {r['images_per_second']:.0f} img/s")
        if r.get("final") and "holdout_accuracy" in r:
            line += f"  | holdout accuracy {r['holdout_accuracy']:.4f}, macro-F1 {r['holdout_macro_f1']:.4f}"
        echo(line)

    trainer = trainer_without_pg_cleaner(TorchTrainer)(
        student_worker,
        train_loop_config={
            "train": cfg.model_dump(mode="json"), "data": ray.put(train_data), "targets": ray.put(targets),
            "train_index": train_index, "holdout_index": holdout_index, "alpha": settings.alpha,
            "temperature": settings.temperature, "threads": resources.threads_per_worker,
            "weights_meta": weights_meta,
        },
        # one worker, no collective: gloo also works on a node that declares GPUs CUDA cannot see
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=1, use_gpu=bool(resources.gpus_per_worker),
                                     resources_per_worker=res),
        run_config=RunConfig(name="ray", storage_path=str(staging),
                             failure_config=FailureConfig(max_failures=cfg.resources.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1), callbacks=[_progress_callback(queue)],
                             logging_config=LoggingConfig(log_level="WARNING")),
    )
    t = time.perf_counter()
    try:
        result = fit_watched(trainer, lambda timeout: queue_take(queue, timeout), show, limits)
    except TrainingStalled as exc:
        raise TrainingFailed(f"distillation stopped: {exc} (budget.startup_timeout_s / budget.stall_timeout_s)") \
            from None
    except Exception as exc:  # Ray wraps the worker's error; show its reason
        raise TrainingFailed(f"distillation stopped: {failure_reason(exc)}") from exc
    finally:
        try:
            queue.shutdown(force=True)
        except Exception:  # noqa: BLE001 - the queue actor is gone with a shut-down Ray
            pass
    seconds = time.perf_counter() - t
    if result.checkpoint is None:
        raise TrainingFailed("distillation stopped: the student's worker reported no final checkpoint")
    path = Path(result.checkpoint.path)
    if not path.is_dir():
        raise TrainingFailed(f"distillation stopped: the student's checkpoint {path} is not a local folder")
    history = json.loads((path / CHECKPOINT_HISTORY).read_text())
    return history, path, seconds
