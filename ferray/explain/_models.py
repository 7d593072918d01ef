"""The torch models behind a bundle or a run: each member's fold models and its ensemble weight.

A bundle keeps copies of its members' safetensors weights (``weights/<member>/fold_i.safetensors``)
next to the ONNX graphs; a run keeps them in its trial folders. The model's shape comes from
the weights file's own metadata (``ferray.training.weights``), as when the run trained it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ferray.errors import ConfigError, DataError, closest
from ferray.predict import Bundle
from ferray.run.layout import BundleLayout, RunLayout
from ferray.run.status import get_status
from ferray.run.weights import WeightsMeta
from ferray.training.models import build_model
from ferray.training.weights import load_fold_models, load_weights, read_weights_meta

__all__ = ["ExplainMember", "ExplainSource", "load_explain_source", "load_weight_files", "describe"]


@dataclass
class ExplainMember:
    """One member: its fold models (eval mode), weights metadata and ensemble weight."""

    name: str
    models: list[nn.Module]
    meta: WeightsMeta
    weight: float = 1.0

    @property
    def backbone(self) -> str | None:
        return ((self.meta.train or {}).get("model") or {}).get("backbone")


@dataclass
class ExplainSource:
    """What :func:`ferray.explain.explain` explains: the chosen members of a bundle or a run."""

    kind: str  # "bundle" or "run"
    path: Path
    members: list[ExplainMember]
    classes: list[str]
    img_size: int
    in_chans: int
    method: str | None = None  # the ensemble's method
    all_members: bool = True  # the whole ensemble (not one member, not the student)
    bundle: object | None = None  # ferray.predict.Bundle, for the ensemble's exact probabilities
    notes: list[str] = field(default_factory=list)

    def weights(self) -> np.ndarray:
        w = np.array([m.weight for m in self.members], dtype=np.float64)
        return w / w.sum()


def load_weight_files(files: list[Path]) -> tuple[list[nn.Module], WeightsMeta]:
    """Build fold models from :func:`ferray.training.weights.save_weights` files; ``(models, first meta)``.

    Raises:
        DataError: no file, an unreadable file, or weights that do not fit the model their metadata names.
    """

    if not files:
        raise DataError("no weights files to build models from")
    models, metas = [], []
    for path in files:
        meta = WeightsMeta.from_dict(read_weights_meta(path), source=path)
        metas.append(meta)
        cfg = meta.train_config()
        model = build_model(
            cfg.model.model_copy(update={"pretrained": False}),
            num_classes=meta.num_classes,
            in_chans=meta.in_chans,
            img_size=meta.img_size,
        )
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(path).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise DataError(
                f"{path}: weights do not fit {cfg.model.backbone} (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        models.append(model.eval())
    return models, metas[0]


def _choices(names: list[str], has_student: bool) -> str:
    listed = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
    return listed + (", student" if has_student else "")


def _pick(names: list[str], member: int | str | None, has_student: bool, where: str) -> list[int] | str:
    """Indexes of the members to explain, or ``"student"``."""
    if member is None:
        return list(range(len(names)))
    if isinstance(member, str) and member == "student":
        if not has_student:
            raise ConfigError(f"{where}: no distilled student (members: {_choices(names, False)})")
        return "student"
    if isinstance(member, str) and member.lstrip("-").isdigit():
        member = int(member)
    if isinstance(member, int) and not isinstance(member, bool):
        if not 0 <= member < len(names):
            raise ConfigError(f"{where}: member {member} does not exist (members: {_choices(names, has_student)})")
        return [member]
    if member in names:
        return [names.index(member)]

    raise ConfigError(
        f"{where}: unknown member {member!r}{closest(str(member), names)} (members: {_choices(names, has_student)})"
    )


def _bundle_source(path: Path, member) -> ExplainSource:
    bundle = Bundle.load(path)
    ens = bundle.manifest.get("ensemble") or {}
    docs = [m for m in ens.get("members", []) if isinstance(m, dict)]
    names = [str(m.get("name")) for m in docs]
    student_doc = bundle.manifest.get("student")
    picked = _pick(names, member, isinstance(student_doc, dict), str(path))
    method = ens.get("method")
    weights = ens.get("weights")
    notes: list[str] = []
    if picked == "student":
        chosen = [("student", student_doc, 1.0)]
    else:
        if not weights or len(weights) != len(docs):
            weights = [1.0] * len(docs)
            if len(picked) > 1:
                notes.append(
                    f"the ensemble's method {method!r} has no member weights: the ensemble map is the "
                    "unweighted mean of the members' maps"
                )
        chosen = [(names[i], docs[i], float(weights[i])) for i in picked]
    members = []
    for name, doc, w in chosen:
        rel = doc.get("weights") or []
        files = [bundle.path / r for r in rel]
        if not files or not all(f.is_file() for f in files):
            missing = next((f for f in files if not f.is_file()), bundle.path / BundleLayout.WEIGHTS / name)
            raise DataError(
                f"{path}: explain needs the members' safetensors weights "
                f"({BundleLayout.WEIGHTS}/<member>/fold_<i>.safetensors), and member {name!r} has none "
                f"({missing} is missing); this bundle holds only ONNX graphs for it. Re-export the run "
                "with `ferray export RUN`, or explain the run folder instead"
            )
        models, meta = load_weight_files(files)
        members.append(ExplainMember(name, models, meta, w))
    first = members[0].meta
    return ExplainSource(
        "bundle",
        bundle.path,
        members,
        bundle.classes,
        first.img_size,
        first.in_chans,
        method=method,
        all_members=picked != "student" and len(picked) == len(docs),
        bundle=bundle,
        notes=notes,
    )


def _run_source(path: Path, member) -> ExplainSource:
    run = RunLayout(path)
    notes: list[str] = []
    method = None
    if run.ensemble_files.summary.is_file():
        from ferray.export import read_ensemble_summary

        summary = read_ensemble_summary(run.ensemble_files.summary)
        ids, method = summary["members"], summary["method"]
        weights = summary["weights"] if summary["weights"] and len(summary["weights"]) == len(ids) else None
        if weights is not None:  # greedy's never-picked members are not part of the ensemble
            keep = [i for i, w in enumerate(weights) if float(w) > 0]
            ids, weights = [ids[i] for i in keep], [float(weights[i]) for i in keep]
        elif len(ids) > 1:
            notes.append(
                f"the ensemble's method {method!r} has no member weights: the ensemble map is the "
                "unweighted mean of the members' maps"
            )
        weights = weights or [1.0] * len(ids)
    else:
        best = get_status(run.root)["best"] if run.root.is_dir() else None
        if best is None:
            raise DataError(f"{path}: no finished trial and no ensemble to explain")
        ids, weights = [best["trial_id"]], [1.0]
        notes.append(f"no ensemble in the run: explaining the best single trial {best['trial_id']}")
    student = run.distill_files
    has_student = student.weights_dir.is_dir() and any(student.weights_dir.glob("fold_*.safetensors"))
    picked = _pick(ids, member, has_student, str(path))
    chosen = (
        [("student", student, 1.0)]
        if picked == "student"
        else [(ids[i], run.trial(ids[i]), weights[i]) for i in picked]
    )
    members = []
    for name, layout, w in chosen:
        models = load_fold_models(layout)
        meta = WeightsMeta.from_dict(read_weights_meta(layout.weights(0)), source=layout.weights(0))
        members.append(ExplainMember(name, models, meta, w))
    first = members[0].meta
    return ExplainSource(
        "run",
        run.root,
        members,
        list(first.class_names),
        first.img_size,
        first.in_chans,
        method=method,
        all_members=picked != "student" and len(picked) == len(ids),
        notes=notes,
    )


def load_explain_source(path: str | os.PathLike, member: int | str | None = None) -> ExplainSource:
    """The members of a bundle or a run to explain (``member``: index, name, ``"student"`` or None for all).

    Raises:
        ConfigError: not a bundle or run, or an unknown member (the message lists them).
        DataError: a bundle without the members' safetensors weights.
    """
    p = Path(path).absolute()
    if BundleLayout(p).manifest.is_file():
        return _bundle_source(p, member)
    if RunLayout(p).spec.is_file() or RunLayout(p).results.is_file():
        return _run_source(p, member)
    if not p.exists():
        raise ConfigError(f"{path}: no such bundle or run directory")
    raise ConfigError(
        f"{path}: neither a bundle ({BundleLayout.MANIFEST}) nor a run directory "
        f"({RunLayout.SPEC}); pass the folder `ferray export` or `ferray search` wrote"
    )


def describe(source: ExplainSource) -> dict:
    """JSON-ready facts about the source's members."""
    w = source.weights()
    return {
        "kind": source.kind,
        "path": str(source.path),
        "method": source.method,
        "classes": source.classes,
        "input": {"size": source.img_size, "channels": source.in_chans},
        "members": [
            {"name": m.name, "backbone": m.backbone, "folds": len(m.models), "weight": float(wi)}
            for m, wi in zip(source.members, w)
        ],
        "notes": list(source.notes),
    }
