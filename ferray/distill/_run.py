"""``distill_run``: train a small student on a sweep's ensemble, and compare the three.

The student is one timm backbone (``distill.student``, or the best of a list of candidates)
with the run's head, image size and channels, trained by ONE Ray Train worker on every
cross-validation row of the run's data (and, optionally, transfer images). One worker, not
k: every cross-validation row already has a leak-free teacher (the fold models that never
saw it), and the student is judged on the holdout, which neither the teacher's targets nor
the student ever trained on. Folds would only multiply the cost.

The teacher (``distill.teacher``):

* ``online`` (default): the ensemble's member models score every training batch, on the
  same augmented and mixed images the student sees (function matching; see
  :mod:`ferray.distill._online`); a row of fold ``f`` is scored by the members' fold-``f``
  models only;
* ``fixed``: the ensemble's stored out-of-fold probabilities (``ensemble/oof.parquet``), one
  target per row.

Patient: ``distill.epochs: null`` (the default) trains ``DistillConfig.EPOCHS_FACTOR`` (3) times a
member's epochs (``budget.max_epochs``). Candidates (``distill.student: [a, b]``) are timed
at batch 1 before Ray starts, those over ``distill.max_latency_ms`` (else the ensemble's
budget, ``ensemble.max_latency_ms``) dropped, and of several left the one most accurate on one
fold of the cross-validation rows (trained on the others) is kept (see :mod:`ferray.distill._select`).

Outputs go to a temporary folder inside the run and are renamed to ``distill/`` at the
end, so a failed or interrupted distillation leaves the previous ``distill/`` (or none)::

    distill/
      weights/fold_0.safetensors   the student (ferray.training.weights format; load_fold_models reads it)
      config.yaml                  the student's training config
      holdout.parquet              its holdout probabilities (ferray.run.predictions format)
      distill.json                 student vs ensemble vs best single trial: accuracy, macro-F1,
                                   parameters, latency per image at batch 1 and 64; the teacher,
                                   the candidates and how the student was chosen
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ferray._io import json_safe, replace_folder
from ferray.errors import ConfigError, DataError, FerrayError
from ferray.metrics import accuracy, macro_f1
from ferray.run.layout import DistillLayout, RunLayout
from ferray.run.predictions import Predictions, read_predictions, write_predictions
from ferray.run.sections import DistillConfig
from ferray.run.spec import read_run_spec
from ferray.run.status import get_status
from ferray.run.weights import WeightsMeta

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
        raise ConfigError(
            f"{run_dir}: not a ferray run directory (no {RunLayout.MANIFEST}); pass the folder `ferray search` created"
        )
    missing = [f for f in (RunLayout.SPEC, RunLayout.FOLDS) if not (layout.root / f).exists()]
    if missing:
        raise ConfigError(f"{run_dir}: {', '.join(missing)} missing; the run directory is incomplete")
    return layout


def _distill_settings(spec, overrides: dict):
    from ferray._config import validate_model
    from ferray.training.models import check_backbone

    given = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(given.get("student"), tuple):
        given["student"] = list(given["student"])
    settings = validate_model(DistillConfig, {**spec.distill.model_dump(), **given}, prefix=("distill",))
    for name in settings.candidates:
        try:
            check_backbone(name)
        except ConfigError as exc:
            where = "--student" if "student" in given else "distill.student"
            raise ConfigError(f"{where}: {exc}") from None
    return settings


def student_config(base, settings, backbone: str | None = None) -> Any:
    """The student's :class:`TrainConfig`: the run's base config with the student's backbone.

    Kept from the base: data size and channels, the head, loss AU settings, augmentation,
    mixing, optimiser and schedule, AMP and resources. Changed: the backbone (``backbone``,
    by default the one of ``settings.student``; random init, no backbone keyword arguments of
    the base's backbone), epochs (``settings.epochs``, or ``DistillConfig.EPOCHS_FACTOR`` times the
    base's, which a sweep sets to ``budget.max_epochs``), batch size, and no early stopping
    (there is no validation split to stop on).
    """
    from ferray.training.config import TrainConfig

    if backbone is None:
        names = settings.candidates
        if len(names) != 1:
            raise ValueError(
                f"distill.student lists {len(names)} candidates {names}; pass the one to train as backbone="
            )
        backbone = names[0]
    raw = base.model_dump(mode="json")
    raw["model"].update(backbone=backbone, pretrained=False, backbone_kwargs={})
    raw["run"].update(epochs=settings.epochs_for(base.run.epochs), early_stopping_patience=None)
    if settings.batch_size:
        raw["run"]["batch_size"] = settings.batch_size
    return TrainConfig.model_validate(raw)


def _check_holdout(hold, plan, fingerprint: str, where: str) -> None:
    from ferray.data import HOLDOUT

    if hold.meta.get("data_fingerprint") != fingerprint:
        raise DataError(
            f"{where}: made for data {hold.meta.get('data_fingerprint')!r}, the run's data is {fingerprint!r}"
        )
    if len(hold) and (
        hold.rows.min() < 0 or hold.rows.max() >= len(plan.fold) or (plan.fold[hold.rows] != HOLDOUT).any()
    ):
        raise DataError(f"{where}: names rows that are not holdout rows of the run's fold plan")


def _transfer_rows(settings, data, base, label) -> tuple[Any, np.ndarray | None]:
    """The data with the labelled transfer images appended, and their teacher probabilities.

    ``label(images) -> (N, C)`` is the teacher's labelling of the new images."""

    from ferray.data import load_source

    if base.model.head != "emotion":
        raise ConfigError(
            f"distill.transfer: transfer images have no action-unit labels, but model.head is "
            f"'{base.model.head}'; leave distill.transfer unset for AU heads"
        )
    h, _, c = data.image_shape
    extra = load_source(settings.transfer, size=h, channels=c)
    if extra.image_shape != data.image_shape:
        raise DataError(f"distill.transfer: images are {extra.image_shape}, the run's data {data.image_shape}")
    probs = label(extra.images)
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
        subjects=None
        if data.subjects is None
        else np.concatenate([data.subjects, np.full(n, "transfer", dtype=data.subjects.dtype)]),
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

    return {
        **extra,
        **scores,
        "models": len(models),
        "params": count_parameters(models),
        "latency_ms_per_image": group_latency(models, input_shape),
    }


def _compare(
    layout: RunLayout,
    staging: Path,
    ens_holdout,
    members,
    members_error: str | None,
    student_probs: np.ndarray,
    holdout_index: np.ndarray,
    data,
    input_shape,
    echo,
) -> dict:
    """The ``student`` / ``ensemble`` / ``best_trial`` sections of distill.json."""
    import torch

    from ferray.distill._bench import holdout_scores
    from ferray.training.weights import load_fold_models

    c = data.num_classes
    labels = data.labels[holdout_index]
    student_models = load_fold_models(staging)  # the file the export stage reads, read back
    out: dict = {
        "student": _group(
            student_models,
            input_shape,
            {"accuracy": accuracy(labels, student_probs), "macro_f1": macro_f1(labels, student_probs, num_classes=c)},
        )
    }
    ens_scores = holdout_scores(ens_holdout, c)
    ens_scores.pop("holdout_rows")
    if members is not None:
        try:
            models = [m for t in members.trial_ids for m in load_fold_models(layout.trial(t))]
        except FerrayError as exc:  # a member's weights were pruned away: scores without costs
            members, members_error = None, str(exc)
        else:
            out["ensemble"] = _group(
                models,
                input_shape,
                ens_scores,
                method=members.method,
                members=list(members.trial_ids),
                weights=members.weights,
            )
            del models
    if members is None:
        out["ensemble"] = {
            **ens_scores,
            "models": None,
            "params": None,
            "latency_ms_per_image": None,
            "note": members_error,
        }
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
    out["latency"] = {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "input": list(input_shape),
        "batch_sizes": [1, 64],
        "how": "torch eager, fp32, one forward pass per model (no TTA), median of timed runs "
        "after 2 warm-up runs; a group of models costs the sum of its models",
    }
    return out


def distill_run(
    run_dir: str | os.PathLike,
    *,
    student: str | Sequence[str] | None = None,
    epochs: int | None = None,
    temperature: float | None = None,
    alpha: float | None = None,
    teacher: str | None = None,
    max_latency_ms: float | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    echo=print,
) -> DistillResult:
    """Distil a sweep's chosen ensemble into one small student and compare the three.

    Settings come from the run's spec (``distill:`` section, see
    :class:`~ferray.run.DistillConfig`); the keyword arguments override them. The
    ``enabled`` flag is not consulted: calling this is the request.

    Args:
        run_dir: a sweep's run directory on which ``ferray ensemble`` has run.
        student: timm backbone of the student, or a list of candidates (``distill.student``).
        epochs, temperature, alpha: override ``distill.epochs``/``temperature``/``alpha``.
        teacher: ``"online"`` or ``"fixed"`` (``distill.teacher``).
        max_latency_ms: drop candidates slower than this at batch 1 (``distill.max_latency_ms``).
        address: a Ray cluster; default ``RAY_ADDRESS`` or a new local Ray.
        num_cpus: CPUs of a new local Ray (default: all).
        echo: receives one progress line per epoch.

    Raises:
        ConfigError: not a run directory, no ensemble yet, an unknown student backbone, bad
            settings, no candidate within ``max_latency_ms`` (naming the measured latencies).
        DataError: the data, fold plan, ensemble predictions and member weights do not belong together.
        TrainingFailed: the student's training stopped, or sent no report within the spec's
            ``budget.startup_timeout_s`` / ``budget.stall_timeout_s``.

    >>> result = distill_run("runs/quickstart-20261130-120000", epochs=5)  # doctest: +SKIP
    >>> result.summary["student"]["accuracy"], result.summary["ensemble"]["accuracy"]  # doctest: +SKIP
    """
    import yaml

    from ferray.data import FoldPlan
    from ferray.distill._online import TRANSFER_GROUP, OnlineTeacher, pack_teacher, teacher_groups
    from ferray.distill._teacher import (
        label_images,
        pack_targets,
        read_ensemble_members,
        read_ensemble_predictions,
        teacher_targets,
    )
    from ferray.distill._worker import CHECKPOINT_HOLDOUT, CHECKPOINT_WEIGHTS
    from ferray.runtime.planner import plan_resources
    from ferray.runtime.startup import ensure_ray
    from ferray.training import load_data
    from ferray.training.augment import build_eval_transform

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # -- everything the user can get wrong, checked before Ray starts -----------------------------
    layout = _check_run(run_dir)
    spec = read_run_spec(layout.root)
    settings = _distill_settings(
        spec,
        {
            "student": student,
            "epochs": epochs,
            "temperature": temperature,
            "alpha": alpha,
            "teacher": teacher,
            "max_latency_ms": max_latency_ms,
        },
    )
    online = settings.teacher == "online"
    oof, ens_holdout = read_ensemble_predictions(layout)
    base = spec.base_config()
    data = load_data(base)
    if base.model.head != "emotion" and data.aus is None:
        raise ConfigError(f"model.head: '{base.model.head}' needs action-unit labels but {data.origin} has none")
    plan = FoldPlan.load(layout.folds)
    targets_oof = teacher_targets(oof, plan, data, where=str(layout.ensemble / "oof.parquet"))
    fingerprint = data.fingerprint()
    _check_holdout(ens_holdout, plan, fingerprint, str(layout.ensemble / "holdout.parquet"))
    h, _, channels = data.image_shape
    n_classes = data.num_classes
    size = base.data.size or h
    members, members_error, pack = None, None, None
    try:
        members = read_ensemble_members(layout)
    except DataError as exc:
        if settings.transfer or online:
            raise
        members_error = str(exc)
    if online:
        pack = pack_teacher(
            layout, members, fingerprint=fingerprint, k=plan.k, num_classes=n_classes, in_chans=channels
        )
    train_data, transfer_probs = data, None
    if settings.transfer:
        echo(f"distill: labelling transfer images from {settings.transfer} with the ensemble")
        driver_teacher = OnlineTeacher.from_pack(pack) if online else None

        def label(images: np.ndarray) -> np.ndarray:  # no TTA online: the teacher the student trains with
            if driver_teacher is not None:
                return driver_teacher.predict(images, build_eval_transform(h, channels))
            return label_images(layout, members, images, fingerprint=fingerprint)

        train_data, transfer_probs = _transfer_rows(settings, data, base, label)
    targets = pack_targets(
        len(train_data), n_classes, targets_oof.rows, targets_oof.probs, targets_oof.labels, settings.temperature
    )
    train_index = targets_oof.rows
    if transfer_probs is not None:
        extra = np.arange(len(data), len(train_data))
        targets[extra] = pack_targets(
            len(extra), n_classes, np.arange(len(extra)), transfer_probs, None, settings.temperature
        )
        train_index = np.concatenate([train_index, extra])
    groups = teacher_groups(len(train_data), plan.fold, targets_oof.rows) if online and settings.alpha > 0 else None
    holdout_index = plan.holdout_index
    epochs_from = (
        ("--epochs" if epochs is not None else "distill.epochs")
        if settings.epochs is not None
        else f"{DistillConfig.EPOCHS_FACTOR} x budget.max_epochs ({base.run.epochs})"
    )

    # the candidates: timed before Ray starts, so a cap nothing meets fails fast
    candidates = settings.candidates
    from ferray.distill._select import latency_cap

    cap, cap_from = latency_cap(settings.max_latency_ms, spec.ensemble.max_latency_ms)
    latencies, kept, dropped = None, list(candidates), []
    if len(candidates) > 1 or cap is not None:
        from ferray.distill._select import apply_latency_cap, candidate_latencies
        from ferray.training.models import build_model

        def build(name: str):
            cfg_c = student_config(base, settings, name)
            return build_model(cfg_c.model, num_classes=n_classes, in_chans=channels, img_size=size)

        latencies = candidate_latencies(candidates, build, (channels, size, size))
        echo(
            "distill: candidates at batch 1 on this CPU (random init): "
            + ", ".join(f"{n} {ms:.3g} ms/image" for n, ms in latencies.items())
        )
        kept, dropped = apply_latency_cap(latencies, cap, where=cap_from or "distill.max_latency_ms")
        if dropped:
            echo(
                f"distill: skipping candidates over {cap_from} {cap:g} ms at batch 1: "
                + ", ".join(f"{n} ({latencies[n]:.3g} ms)" for n in dropped)
            )
    timings["prepare"] = time.perf_counter() - t0

    # -- Ray Train: one worker per student trained ------------------------------------------------
    import ray

    t = time.perf_counter()
    cluster = ensure_ray(address, num_cpus=num_cpus)
    cfg0 = student_config(base, settings, kept[0])
    resources = plan_resources(
        1,
        cluster.get("CPU", 0),
        cluster.get("GPU", 0),
        cpus_per_worker=cfg0.resources.cpus_per_worker,
        gpus_per_worker=cfg0.resources.gpus_per_worker,
    )
    # alpha 0 trains on the hard labels alone: the teacher's forward passes would be wasted.
    refs = {
        "data": ray.put(train_data),
        "targets": ray.put(targets),
        "teacher": ray.put(pack) if online and settings.alpha > 0 else None,
    }
    timings["ray_start"] = time.perf_counter() - t
    staging = layout.root / f".{RunLayout.DISTILL}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    limits = spec.budget.stall_limits()

    def meta_of(cfg) -> dict:
        return WeightsMeta(
            train=cfg.model_dump(mode="json"),
            num_classes=int(n_classes),
            in_chans=int(channels),
            img_size=int(size),
            class_names=list(data.class_names),
            fold=0,
            k=1,
            ema=cfg.optim.ema_decay is not None,
            normalise={"mean": 0.5, "std": 0.5},
            data_fingerprint=fingerprint,
            distill={
                "student": cfg.model.backbone,
                "temperature": settings.temperature,
                "alpha": settings.alpha,
                "teacher": settings.teacher,
                "ensemble": str(layout.ensemble),
            },
        ).to_dict()

    teacher_words = (
        f"online teacher ({len(pack.members)} member(s) x {plan.k} fold models, {pack.combiner.rule})"
        if online
        else "fixed teacher (the ensemble's OOF probabilities)"
    )
    if settings.alpha == 0:
        teacher_words = "alpha 0: hard labels only, no teacher"
    try:
        selection = {
            "candidates": list(candidates),
            "latency_ms_batch_1": latencies,
            "max_latency_ms": cap,
            "max_latency_from": cap_from,
            "dropped": dropped,
            "fold": None,
            "rows": None,
            "scores": None,
            "chosen": kept[0],
            "how": "one candidate" if len(kept) == 1 else None,
        }
        if len(kept) > 1:
            from ferray.distill._select import pick_candidate, selection_fold

            s_fold = selection_fold(plan.fold, targets_oof.rows)
            s_index = plan.val_index(s_fold)
            s_train = train_index[~np.isin(train_index, s_index)]
            # Online: every training row is scored by the members' fold-s models, which never saw fold s,
            # so no label of the scoring fold reaches a candidate by any path.
            s_groups = np.full(len(train_data), s_fold, np.int64) if refs["teacher"] is not None else None
            scores: dict[str, float] = {}
            for i, name in enumerate(kept):
                cfg_c = student_config(base, settings, name)
                echo(
                    f"distill: candidate {i + 1}/{len(kept)} {name}: {len(s_train)} training images (fold "
                    f"{s_fold} held out), {cfg_c.run.epochs} epochs, {teacher_words}"
                )
                _, ckpt, _ = _fit(
                    cfg_c,
                    refs,
                    s_train,
                    s_index,
                    settings,
                    resources,
                    meta_of(cfg_c),
                    staging,
                    echo,
                    limits,
                    groups=s_groups,
                    name=f"select-{i}",
                    eval_name="selection",
                )
                probs = np.load(ckpt / CHECKPOINT_HOLDOUT)
                scores[name] = accuracy(data.labels[s_index], probs)
                shutil.rmtree(staging / f"select-{i}", ignore_errors=True)
                echo(f"distill: candidate {name}: accuracy {scores[name]:.4f} on fold {s_fold} ({len(s_index)} rows)")
            chosen = pick_candidate(scores, latencies)
            echo(f"distill: chose {chosen} (best accuracy on fold {s_fold}); training it on every cross-validation row")
            selection.update(
                fold=s_fold,
                rows=int(len(s_index)),
                scores=scores,
                chosen=chosen,
                how=f"each candidate trained on the cross-validation rows outside fold {s_fold} "
                f"(and any transfer images) and scored by accuracy against fold {s_fold}'s "
                "hard labels; the best (ties: the faster) retrained on every cross-validation "
                "row; the holdout plays no part"
                + (
                    f"; online teacher: the members' fold-{s_fold} models scored every "
                    "training row, so no label of the scoring fold reached a candidate"
                    if online
                    else "; fixed teacher: the training rows' targets come from fold models that "
                    f"trained on fold {s_fold} (an indirect influence, the same for every "
                    "candidate)"
                ),
            )
        chosen = selection["chosen"]
        cfg = student_config(base, settings, chosen)
        weights_meta = meta_of(cfg)
        echo(
            f"distill: student {chosen}, {len(train_index)} training images "
            f"({len(targets_oof.rows)} cross-validation rows"
            + (f" + {len(train_index) - len(targets_oof.rows)} transfer" if transfer_probs is not None else "")
            + f"), {cfg.run.epochs} epochs ({epochs_from}), T={settings.temperature:g}, alpha={settings.alpha:g}, "
            f"{teacher_words}; 1 worker x {resources.cpus_per_worker:g} CPU"
            + (f", {resources.gpus_per_worker:g} GPU" if resources.gpus_per_worker else "")
        )
        history, checkpoint_dir, fit_seconds = _fit(
            cfg,
            refs,
            train_index,
            holdout_index,
            settings,
            resources,
            weights_meta,
            staging,
            echo,
            limits,
            groups=groups,
        )
        timings["fit"] = fit_seconds
        out = DistillLayout(staging)
        out.weights_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint_dir / CHECKPOINT_WEIGHTS, out.weights(0))
        probs = np.load(checkpoint_dir / CHECKPOINT_HOLDOUT)
        shutil.rmtree(staging / "ray", ignore_errors=True)
        tta = list(cfg.augment.tta)
        write_predictions(
            Predictions(
                holdout_index,
                data.ids[holdout_index],
                np.zeros(len(holdout_index)),
                data.labels[holdout_index],
                probs,
                None,
                {
                    "class_names": list(data.class_names),
                    "k": 1,
                    "data_fingerprint": fingerprint,
                    "tta": tta,
                    "kind": "holdout",
                    "model": "student",
                },
            ),
            out.holdout,
        )
        out.config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

        t = time.perf_counter()
        echo("distill: measuring holdout scores, parameters and latency (student, ensemble, best trial)")
        if online:
            teacher_section = {
                "mode": "online",
                **pack.describe(),
                "source": "the ensemble members' fold models, run on every training batch (the augmented, "
                "mixed images the student sees; eval mode, no gradient)",
                "leak_free": "a cross-validation row of fold f is scored by each member's fold-f model only (the "
                "one that never trained on it); transfer images by the mean of a member's fold "
                f"models (group {TRANSFER_GROUP}); mixup/CutMix partners come from the same group",
                "resized": [m.trial_id for m in pack.members if m.img_size != size],
            }
        else:
            teacher_section = {"mode": "fixed", "source": str(layout.ensemble / "oof.parquet")}
        teacher_section.update(
            oof_accuracy=targets_oof.agreement(), temperature=settings.temperature, alpha=settings.alpha
        )
        if settings.alpha == 0:
            teacher_section["note"] = "alpha 0: the student learned the hard labels alone; the teacher was not run"
        summary = {
            "run": str(layout.root),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data_fingerprint": fingerprint,
            "holdout_rows": int(len(holdout_index)),
            **_compare(
                layout,
                staging,
                ens_holdout,
                members,
                members_error,
                probs,
                holdout_index,
                data,
                (channels, size, size),
                echo,
            ),
            "teacher": teacher_section,
            "selection": selection,
            "training": {
                "student": chosen,
                "epochs": cfg.run.epochs,
                "epochs_from": epochs_from,
                "batch_size": cfg.run.batch_size,
                "cross_validation_rows": int(len(targets_oof.rows)),
                "transfer": settings.transfer,
                "transfer_rows": int(len(train_index) - len(targets_oof.rows)),
                "tta": tta,
                "workers": 1,
                "cpus_per_worker": resources.cpus_per_worker,
                "gpus_per_worker": resources.gpus_per_worker,
                "fit_seconds": fit_seconds,
                "history": history,
            },
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
    echo(
        f"distill: holdout accuracy student {_fmt(s['student']['accuracy'])}, ensemble "
        f"{_fmt(s['ensemble']['accuracy'])}"
        + (f", best trial {_fmt(s['best_trial'].get('accuracy'))}" if s.get("best_trial") else "")
        + f"; written to {layout.distill}"
    )
    return DistillResult(output_dir=layout.distill, summary=summary, history=history, timings=timings)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def _fit(
    cfg,
    refs: dict,
    train_index,
    eval_index,
    settings,
    resources,
    weights_meta,
    staging: Path,
    echo,
    limits,
    *,
    groups: np.ndarray | None = None,
    name: str = "ray",
    eval_name: str = "holdout",
) -> tuple[list[dict], Path, float]:
    """Run one student's Ray Train job; return its history, final checkpoint folder and seconds.

    ``refs`` holds the object refs of the data, the packed targets and the online teacher
    (None: fixed targets); ``groups`` each row's teacher group (online only). The worker
    predicts ``eval_index`` after the last epoch (the holdout, or a candidate's selection
    fold, reported as ``{eval_name}_accuracy``). ``limits`` (the spec's
    ``budget.startup_timeout_s`` / ``budget.stall_timeout_s``, as for its trials) bounds the
    wait for each report."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.config import LoggingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    from ray.util.queue import Queue

    from ferray.distill._worker import CHECKPOINT_HISTORY, student_worker
    from ferray.runtime.compat import trainer_without_pg_cleaner
    from ferray.training._backend import process_group_config
    from ferray.training._kfold import TrainingFailed, failure_reason, queue_take
    from ferray.training.watch import TrainingStalled, fit_watched

    res = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker:
        res["GPU"] = resources.gpus_per_worker
    queue = Queue(actor_options={"num_cpus": 0})
    epochs = cfg.run.epochs

    def show(r: dict) -> None:
        line = (
            f"distill: epoch {r['epoch']}/{epochs}  train_loss {r['train_loss']:.4f}  "
            f"{r['epoch_seconds']:.1f}s  {r['images_per_second']:.0f} img/s"
        )
        if r.get("final") and f"{eval_name}_accuracy" in r:
            line += (
                f"  | {eval_name} accuracy {r[f'{eval_name}_accuracy']:.4f}, macro-F1 {r[f'{eval_name}_macro_f1']:.4f}"
            )
        echo(line)

    trainer = trainer_without_pg_cleaner(DataParallelTrainer)(
        student_worker,
        train_loop_config={
            "train": cfg.model_dump(mode="json"),
            "data": refs["data"],
            "targets": refs["targets"],
            "teacher": refs.get("teacher"),
            "groups": groups,
            "train_index": train_index,
            "holdout_index": eval_index,
            "eval_name": eval_name,
            "alpha": settings.alpha,
            "temperature": settings.temperature,
            "threads": resources.threads_per_worker,
            "weights_meta": weights_meta,
        },
        # one worker, no collective (ferray's gloo backend sets up no group for one worker, and its
        # Train controller imports no torch)
        backend_config=process_group_config(),
        scaling_config=ScalingConfig(num_workers=1, use_gpu=bool(resources.gpus_per_worker), resources_per_worker=res),
        run_config=RunConfig(
            name=name,
            storage_path=str(staging),
            failure_config=FailureConfig(max_failures=cfg.resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[_progress_callback(queue)],
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    t = time.perf_counter()
    try:
        result = fit_watched(trainer, lambda timeout: queue_take(queue, timeout), show, limits)
    except TrainingStalled as exc:
        raise TrainingFailed(
            f"distillation stopped: {exc} (budget.startup_timeout_s / budget.stall_timeout_s)"
        ) from None
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
