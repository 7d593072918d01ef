"""What a bundle is made of: members, each the k fold models of one trial (or any model)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from ferray.errors import DataError
from ferray.run.layout import TrialLayout, check_run_name
from ferray.run.weights import WeightsMeta
from ferray.training.weights import load_fold_models, read_weights_meta

__all__ = ["Member", "as_member", "check_compatible", "unique_names"]


@dataclass
class Member:
    """One model of a bundle: the mean of ``models``' class probabilities.

    Attributes:
        name: its folder name in the bundle (``weights/<name>/``): the trial id.
        models: the fold models, in eval mode.
        meta: the weights metadata (:class:`ferray.run.WeightsMeta`): ``train`` config,
            ``num_classes``, ``in_chans``, ``img_size``, ``class_names``, ``normalise``, ...
        weight_files: the safetensors files the models were loaded from (copied into the
            bundle); empty for a model given in memory, whose weights are saved instead.
        score: the trial's cross-validation metrics (``metrics.json``), when known.
        source: the trial folder, when there is one.
    """

    name: str
    models: list[nn.Module]
    meta: WeightsMeta
    weight_files: list[Path] = field(default_factory=list)
    score: dict | None = None
    source: Path | None = None

    @classmethod
    def from_trial(cls, trial: str | os.PathLike | TrialLayout, name: str | None = None) -> Member:
        """The k fold models of a finished trial folder (``<trial>/weights/fold_<i>.safetensors``).

        Raises:
            DataError: no weights, unreadable weights, or folds that disagree on the model's shape.
        """

        layout = trial if isinstance(trial, TrialLayout) else TrialLayout(Path(trial))
        models = load_fold_models(layout)
        files = sorted(layout.weights_dir.glob("fold_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
        metas = [WeightsMeta.from_dict(read_weights_meta(p), source=p) for p in files]
        for path, meta in zip(files[1:], metas[1:]):
            for key in ("num_classes", "in_chans", "img_size", "class_names"):
                if getattr(meta, key) != getattr(metas[0], key):
                    raise DataError(
                        f"{path}: {key} is {getattr(meta, key)!r}, but {files[0].name} has "
                        f"{getattr(metas[0], key)!r}; the folds of one trial must agree"
                    )
        return cls(
            name=name or layout.trial_id,
            models=models,
            meta=metas[0],
            weight_files=files,
            score=_read_score(layout, metas[0]),
            source=layout.root,
        )

    @classmethod
    def from_models(cls, models: nn.Module | list[nn.Module], meta: WeightsMeta | dict, name: str) -> Member:
        """A member from models in memory and their metadata.

        ``meta``: a :class:`~ferray.run.WeightsMeta`, or its dict form, which needs
        ``num_classes``, ``in_chans``, ``img_size`` and ``class_names``; ``train`` (the training
        config) and ``normalise`` are recorded when present.
        """
        models = [models] if isinstance(models, nn.Module) else list(models)
        if not isinstance(meta, WeightsMeta):
            missing = [k for k in ("num_classes", "in_chans", "img_size", "class_names") if k not in meta]
            if missing:
                raise DataError(f"member {name!r}: metadata lacks {', '.join(missing)}")
            meta = WeightsMeta.from_dict(meta, source=f"member {name!r}")
        return cls(name=name, models=[m.eval() for m in models], meta=replace(meta))

    @property
    def classes(self) -> list[str]:
        return list(self.meta.class_names)

    @property
    def in_chans(self) -> int:
        return self.meta.in_chans

    @property
    def img_size(self) -> int:
        return self.meta.img_size

    @property
    def normalise(self) -> dict:
        return dict(self.meta.normalise or {"mean": 0.5, "std": 0.5})

    def describe(self) -> dict:
        """The member's manifest entry (weights files are added by the bundle writer)."""
        train = self.meta.train or {}
        return {
            "name": self.name,
            "trial_id": self.source.name if self.source is not None else self.name,
            "backbone": (train.get("model") or {}).get("backbone"),
            "folds": len(self.models),
            "config": train,
            "score": self.score,
            "data_fingerprint": self.meta.data_fingerprint or None,
            "ema": self.meta.ema,
        }


def _read_score(layout: TrialLayout, meta: WeightsMeta) -> dict | None:
    if not layout.metrics.is_file():
        return None
    try:
        doc = json.loads(layout.metrics.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    metric = ((meta.train or {}).get("run") or {}).get("metric")
    out = {"metric": metric}
    for key in ("oof", "holdout"):
        if isinstance(doc.get(key), dict):
            out[key] = doc[key]
    oof = out.get("oof") or {}
    if metric in oof:
        out["cv"] = oof[metric]
    return out


def as_member(item, name: str | None = None) -> Member:
    """A :class:`Member` from a trial folder (path or ``TrialLayout``) or a ``Member``."""
    if isinstance(item, Member):
        return item
    if isinstance(item, (str, os.PathLike, TrialLayout)):
        return Member.from_trial(item, name=name)
    raise DataError(f"member {item!r}: expected a trial folder or a ferray.export.Member")


def unique_names(members: list[Member], reserved: set[str] = frozenset()) -> None:
    """Make member names unique, valid folder names (``<trial>``, ``<trial>-2``, ...)."""
    seen: set[str] = set(reserved)
    for m in members:
        check_run_name(m.name, what="member name")
        base, n = m.name, 1
        while m.name in seen:
            n += 1
            m.name = f"{base}-{n}"
        seen.add(m.name)


def check_compatible(members: list[Member], what: str = "member") -> None:
    """Every member must predict the same classes from the same kind of image.

    Raises:
        DataError: naming the first member that differs and how.
    """
    first = members[0]
    for m in members[1:]:
        for label, a, b in (
            ("classes", m.classes, first.classes),
            ("in_chans", m.in_chans, first.in_chans),
            ("img_size", m.img_size, first.img_size),
            ("normalise", m.normalise, first.normalise),
        ):
            if a != b:
                raise DataError(
                    f"{what} {m.name!r}: {label} is {a!r}, but {first.name!r} has {b!r}; "
                    "one ensemble graph needs members trained on the same image format"
                )
