"""The teacher: the chosen ensemble's out-of-fold probabilities, checked against the run.

``ferray ensemble RUN`` writes the chosen ensemble's predictions into ``ensemble/``
(:class:`~ferray.run.layout.EnsembleLayout`): ``oof.parquet`` has one row per
cross-validation row, each predicted by fold models that never trained on it, and
``holdout.parquet`` one row per holdout row. The student learns from the OOF rows only;
the holdout is what it is scored on, so no holdout prediction ever becomes a target.

For transfer images (rows outside the dataset), :func:`label_images` runs the ensemble's
member trials' fold models and combines them with the ensemble's weights from
``ensemble.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferray.data import HOLDOUT, FERData, FoldPlan
from ferray.errors import ConfigError, DataError
from ferray.metrics import accuracy
from ferray.run.layout import EnsembleLayout, RunLayout
from ferray.run.predictions import Predictions, read_predictions
from ferray.run.weights import WeightsMeta

__all__ = [
    "TeacherTargets",
    "read_ensemble_predictions",
    "teacher_targets",
    "pack_targets",
    "EnsembleMembers",
    "read_ensemble_members",
    "label_images",
]


@dataclass(frozen=True)
class TeacherTargets:
    """The teacher's distribution for each cross-validation row, in row order.

    Attributes:
        rows: dataset rows (sorted; exactly the fold plan's cross-validation rows).
        probs: ``float32 (len(rows), C)`` teacher probabilities, rows summing to one.
        labels: the rows' hard labels.
    """

    rows: np.ndarray
    probs: np.ndarray
    labels: np.ndarray

    def agreement(self) -> float:
        """Fraction of rows whose teacher argmax is the hard label (the teacher's OOF accuracy)."""
        return accuracy(self.labels, self.probs) if len(self.rows) else float("nan")


def read_ensemble_predictions(run: RunLayout) -> tuple[Predictions, Predictions]:
    """The chosen ensemble's ``(oof, holdout)`` predictions of a run.

    Raises:
        ConfigError: the run has no ensemble yet (``ferray ensemble RUN`` makes it).
        DataError: a predictions file is missing or unreadable.
    """
    files = EnsembleLayout(run.ensemble)
    if not files.root.is_dir():
        raise ConfigError(
            f"{run.root}: no ensemble ({files.root} does not exist); distillation learns from "
            f"the ensemble's out-of-fold predictions: run `ferray ensemble {run.root}` first"
        )
    missing = [p.name for p in (files.oof, files.holdout) if not p.is_file()]
    if missing:
        raise ConfigError(
            f"{files.root}: {' and '.join(missing)} missing (an unfinished ensemble?); "
            f"run `ferray ensemble {run.root}` again"
        )
    return read_predictions(files.oof), read_predictions(files.holdout)


def teacher_targets(
    oof: Predictions, plan: FoldPlan, data: FERData, *, where: str = "ensemble oof.parquet"
) -> TeacherTargets:
    """Check the ensemble's OOF predictions against the run's data and fold plan; return the targets.

    Every cross-validation row must appear exactly once, predicted by the fold that held it
    out, with the data's id and label; no holdout row may appear; the probabilities must
    be finite distributions over the data's classes, made for the same data (fingerprint).

    Raises:
        DataError: naming the first rule the file breaks.
    """
    fingerprint = data.fingerprint()
    theirs = oof.meta.get("data_fingerprint")
    if theirs != fingerprint or plan.data_fingerprint != fingerprint:
        raise DataError(
            f"{where}: made for data {theirs!r}, the fold plan for {plan.data_fingerprint!r}, but the "
            f"run's data is {fingerprint!r}: the data changed since the sweep; re-run the sweep and "
            "`ferray ensemble` on it"
        )
    if list(oof.class_names) != list(data.class_names):
        raise DataError(f"{where}: classes {oof.class_names} differ from the data's {list(data.class_names)}")
    plan.check_matches(data)
    rows = oof.rows
    if len(rows) and (rows.min() < 0 or rows.max() >= len(data)):
        raise DataError(f"{where}: row indices outside 0..{len(data) - 1}")
    held = rows[plan.fold[rows] == HOLDOUT]
    if len(held):
        raise DataError(
            f"{where}: {len(held)} holdout row(s) (e.g. row {int(held[0])}) among the out-of-fold "
            "predictions; holdout rows are never distillation targets"
        )
    unique, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        raise DataError(
            f"{where}: row {int(unique[counts > 1][0])} appears {int(counts.max())} times; each "
            "cross-validation row must appear once"
        )
    cv = plan.cv_index
    if len(unique) != len(cv):
        absent = np.setdiff1d(cv, unique)
        raise DataError(
            f"{where}: {len(absent)} of {len(cv)} cross-validation rows have no prediction (e.g. row {int(absent[0])})"
        )
    in_fold = np.flatnonzero(oof.folds.astype(np.int64) != plan.fold[rows].astype(np.int64))
    if len(in_fold):
        i = in_fold[0]
        raise DataError(
            f"{where}: row {int(rows[i])} is in fold {int(plan.fold[rows[i]])} but was predicted by "
            f"fold {int(oof.folds[i])}'s model, which trained on it; targets must be out-of-fold"
        )
    if not np.array_equal(oof.ids.astype(str), data.ids[rows].astype(str)) or not np.array_equal(
        oof.labels, data.labels[rows]
    ):
        raise DataError(f"{where}: ids or labels differ from the data's rows they name")
    probs = np.asarray(oof.probs, dtype=np.float64)
    if probs.shape != (len(rows), data.num_classes) or not np.all(np.isfinite(probs)) or (probs < 0).any():
        raise DataError(f"{where}: probabilities must be finite, >= 0, shape (rows, {data.num_classes})")
    sums = probs.sum(axis=1)
    if np.abs(sums - 1.0).max() > 1e-3:
        raise DataError(
            f"{where}: probability rows must sum to 1 (found {float(sums.min()):.4f}..{float(sums.max()):.4f})"
        )
    order = np.argsort(rows, kind="stable")
    probs = probs[order] / sums[order, None]
    return TeacherTargets(rows=rows[order], probs=probs.astype(np.float32), labels=data.labels[rows[order]])


def pack_targets(
    n_rows: int, num_classes: int, rows: np.ndarray, teacher: np.ndarray, labels: np.ndarray | None, temperature: float
) -> np.ndarray:
    """``float32 (n_rows, 2C)`` packed targets ``[soften(teacher, T) | one-hot label]`` at ``rows``.

    Rows not named stay zero (they are never trained on); ``labels=None`` leaves the hard
    half zero (transfer images: no hard-label term).
    """
    from ferray.distill._loss import soften

    out = np.zeros((n_rows, 2 * num_classes), np.float32)
    out[rows, :num_classes] = soften(teacher, temperature)
    if labels is not None:
        out[rows, num_classes + np.asarray(labels, dtype=np.int64)] = 1.0
    return out


# -- the ensemble's members (transfer labelling, latency) ------------------------------------


@dataclass(frozen=True)
class EnsembleMembers:
    """The trials of the chosen ensemble and, for weighted averages, their weights.

    ``state`` is the chosen method's entry of ``ensemble.json``'s ``methods`` (what it
    learned, e.g. stacking's ``coef`` and ``intercept`` over ``trial_ids`` in this order), or
    None when the file has none.
    """

    trial_ids: tuple[str, ...]
    weights: dict[str, float] | None
    method: str | None
    state: dict | None = None


def read_ensemble_members(run: RunLayout) -> EnsembleMembers:
    """The chosen ensemble's member trials (and weights) from ``ensemble/ensemble.json``.

    ``ferray ensemble`` writes ``members`` (a list of ``{"trial_id": ...}``), ``methods``
    (each method's learned state, ``weights`` aligned with ``members`` for the averaging
    methods: greedy, mean) and ``chosen``. For a weighted average the members with weight 0
    are left out (they do not run at inference); for other methods (stacking, vote)
    ``weights`` is ``None`` and every member counts.

    Raises:
        DataError: the file is missing, unreadable, or names no member trials.
    """
    path = EnsembleLayout(run.ensemble).summary
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run `ferray ensemble {run.root}` again") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from None
    doc = doc if isinstance(doc, dict) else {}
    ids = []
    for m in doc.get("members") or []:
        tid = m.get("trial_id") if isinstance(m, dict) else m
        if isinstance(tid, str) and tid:
            ids.append(tid)
    if not ids:
        raise DataError(f"{path}: names no member trials (expected 'members': [{{'trial_id': ...}}, ...])")
    chosen = doc.get("chosen") if isinstance(doc.get("chosen"), str) else None
    fitted = (doc.get("methods") or {}).get(chosen) if chosen else None
    weights = fitted.get("weights") if isinstance(fitted, dict) else None
    if isinstance(weights, list) and len(weights) == len(ids) and all(isinstance(w, (int, float)) for w in weights):
        used = {t: float(w) for t, w in zip(ids, weights) if w > 0}
        if used:
            return EnsembleMembers(tuple(used), used, chosen, fitted)
    elif weights is not None:
        raise DataError(
            f"{path}: methods.{chosen}.weights has {len(weights) if isinstance(weights, list) else 0} "
            f"numbers for {len(ids)} members"
        )
    return EnsembleMembers(tuple(dict.fromkeys(ids)), None, chosen, fitted if isinstance(fitted, dict) else None)


def label_images(
    run: RunLayout, members: EnsembleMembers, images: np.ndarray, *, fingerprint: str, batch_size: int = 256
) -> np.ndarray:
    """The ensemble's probabilities ``(N, C)`` for ``uint8 (N, H, W, C)`` images outside the dataset.

    Each member trial's fold models predict (with the trial's TTA) and are averaged; members
    are combined with the ensemble's weights.

    Raises:
        ConfigError: the chosen ensemble is not a weighted average of its members.
        DataError: a member has no weights, or was trained on other data.
    """
    import torch

    from ferray.training.augment import build_eval_transform
    from ferray.training.tta import predict_proba
    from ferray.training.weights import load_fold_models, read_weights_meta

    if not members.weights:
        raise ConfigError(
            f"distill.transfer: labelling transfer images needs a weighted-average ensemble "
            f"(e.g. greedy); the chosen ensemble is {members.method or 'unknown'!r}"
        )
    total = sum(members.weights.values())
    out = None
    for trial_id, weight in members.weights.items():
        layout = run.trial(trial_id)
        files = sorted(layout.weights_dir.glob("fold_*.safetensors")) if layout.weights_dir.is_dir() else []
        if not files:
            raise DataError(f"{layout.root}: ensemble member has no model weights; cannot label transfer images")
        meta = WeightsMeta.from_dict(read_weights_meta(files[0]), source=files[0])
        if meta.data_fingerprint != fingerprint:
            raise DataError(f"{files[0]}: trained on data {meta.data_fingerprint!r}, the run's is {fingerprint!r}")
        tta = list(meta.train_config().augment.tta)
        transform = build_eval_transform(meta.img_size, meta.in_chans)
        models = load_fold_models(layout)
        with torch.inference_mode():
            probs = np.mean(
                [predict_proba(m, images, transform, tta=tta, batch_size=batch_size)[0] for m in models], axis=0
            )
        out = probs * (weight / total) if out is None else out + probs * (weight / total)
    assert out is not None  # members.weights is non-empty
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)
