"""``evaluate_bundle``: an exported bundle scored on another dataset, with bootstrap intervals.

The bundle's ensemble (or student) predicts every image of the data through
:func:`ferray.predict.predict` (onnxruntime, as users run it). The data's classes are matched
to the model's by canonical name (:func:`ferray.data.match_classes`: ``happiness`` is
``happy``, ``anger`` is ``angry``). Rows of a data class the model lacks (FER+'s
``contempt`` for a FER2013 model) are listed with their counts and what the model called
them, and left out of every score; data sharing no class with the model is an error.

Accuracy and macro-F1 (over the matched classes) come with seeded percentile-bootstrap
intervals (:func:`ferray.report.cross_dataset_scores`); balanced accuracy is the
mean recall over matched classes with rows (scikit-learn's ``balanced_accuracy_score``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferray._io import json_safe
from ferray.errors import ConfigError, DataError
from ferray.metrics import balanced_accuracy, bootstrap_metrics, per_class_metrics
from ferray.run.layout import BundleLayout, RunLayout

__all__ = ["Evaluation", "evaluate_bundle", "resolve_bundle"]


def resolve_bundle(path: str | os.PathLike) -> Path:
    """The bundle folder of ``path``: the folder itself, or a run directory's ``RUN/bundle``.

    Raises:
        DataError: a run directory without an exported bundle (run ``ferray export RUN``).
        ConfigError: neither a bundle nor a run directory.
    """
    src = Path(path).absolute()
    if BundleLayout(src).manifest.is_file():
        return src
    run = RunLayout(src)
    if BundleLayout(run.bundle).manifest.is_file():
        return run.bundle
    if any(p.is_file() for p in (run.manifest, run.spec, run.results)):
        raise DataError(
            f"{src}: the run has no exported bundle ({run.bundle}); run `ferray export {src}` first, "
            "or pass a bundle folder"
        )
    if not src.exists():
        raise ConfigError(f"{src}: no such bundle or run directory")
    raise ConfigError(
        f"{src}: neither a bundle (no {BundleLayout.MANIFEST}) nor a ferray run directory "
        f"(no {RunLayout.SPEC} or {RunLayout.RESULTS})"
    )


@dataclass
class Evaluation:
    """A bundle's scores on one dataset (see the module docstring).

    Attributes:
        bundle: the bundle folder.
        source: the data source as given.
        model: ``"ensemble"`` or ``"student"``.
        model_classes, data_classes: each side's class names, in label order.
        rows: images in the data; ``scored_rows`` of them belong to a matched class.
        matched: ``{data class: model class}``.
        excluded: ``{data class the model lacks: rows}``, left out of every score.
        excluded_predicted: ``{excluded data class: {model class: rows}}``, what the model called them.
        unseen: model classes the data lacks; ``unseen_predicted`` counts the scored rows
            the model gave one of them (always wrong).
        accuracy, macro_f1: ``Interval(value, low, high)``.
        balanced_accuracy: mean recall over the matched classes with rows.
        per_class: ``{model class: {"data_class", "precision", "recall", "f1", "support"}}`` of
            the matched classes, in the model's order.
        n_boot, level, seed: the bootstrap's resamples, interval level and seed.
    """

    bundle: Path
    source: str
    model: str
    model_classes: list[str]
    data_classes: list[str]
    rows: int
    scored_rows: int
    matched: dict[str, str]
    excluded: dict[str, int]
    excluded_predicted: dict[str, dict[str, int]]
    unseen: list[str]
    unseen_predicted: dict[str, int]
    accuracy: Any
    macro_f1: Any
    balanced_accuracy: float
    per_class: dict[str, dict] = field(default_factory=dict)
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0

    def to_dict(self) -> dict:
        """JSON-ready (``ferray evaluate --json``)."""

        return json_safe(
            {
                "bundle": str(self.bundle),
                "source": self.source,
                "model": self.model,
                "model_classes": self.model_classes,
                "data_classes": self.data_classes,
                "rows": self.rows,
                "scored_rows": self.scored_rows,
                "matched": self.matched,
                "excluded": self.excluded,
                "excluded_predicted": self.excluded_predicted,
                "unseen": self.unseen,
                "unseen_predicted": self.unseen_predicted,
                "accuracy": self.accuracy._asdict(),
                "macro_f1": self.macro_f1._asdict(),
                "balanced_accuracy": self.balanced_accuracy,
                "per_class": self.per_class,
                "bootstrap": {"method": "percentile", "n_boot": self.n_boot, "level": self.level, "seed": self.seed},
            }
        )

    def render(self):
        """A rich renderable: the scores with their intervals, the per-class table, the excluded classes."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        pct = f"{round(100 * self.level):g}%"
        parts: list = [
            Text(f"{self.bundle} ({self.model}) on {self.source}: {self.scored_rows} of {self.rows} images scored"),
            Text(f"accuracy           {_interval(self.accuracy)}"),
            Text(f"macro-F1           {_interval(self.macro_f1)}   (over the {len(self.per_class)} matched classes)"),
            Text(f"balanced accuracy  {_num(self.balanced_accuracy)}"),
        ]
        table = Table(title="per class (the data's name in brackets where it differs)")
        for col in ("class", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for name, c in self.per_class.items():
            label = name if c["data_class"] == name else f"{name} ({c['data_class']})"
            table.add_row(label, _num(c["precision"]), _num(c["recall"]), _num(c["f1"]), str(c["support"]))
        parts.append(table)
        if self.excluded:
            parts.append(Text(f"excluded, classes the model lacks ({sum(self.excluded.values())} rows):"))
            for name, n in self.excluded.items():
                called = ", ".join(f"{k} {v}" for k, v in self.excluded_predicted.get(name, {}).items() if v)
                parts.append(Text(f"  {name}: {n} rows" + (f" (predicted as {called})" if called else "")))
        else:
            parts.append(Text("excluded: none (the model has every class of the data)"))
        if self.unseen:
            parts.append(
                Text(
                    "model classes without rows in the data: "
                    + ", ".join(
                        f"{c} (predicted for {self.unseen_predicted.get(c, 0)} scored rows)" for c in self.unseen
                    )
                )
            )
        parts.append(Text(f"intervals: {pct} percentile bootstrap, {self.n_boot} resamples, seed {self.seed}"))
        return Group(*parts)


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) and np.isfinite(v) else "-"


def _interval(ci) -> str:
    return f"{_num(ci.value)} [{_num(ci.low)}, {_num(ci.high)}]"


def evaluate_bundle(
    path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    student: bool = False,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    echo: Callable[[str], Any] | None = None,
) -> Evaluation:
    """Score a bundle (or a run's ``RUN/bundle``) on the dataset ``data``.

    Args:
        path: a bundle folder or a run directory with an exported bundle.
        data: a source :func:`ferray.data.load_source` accepts (a path, ``synthetic:...``).
        student: score the bundle's distilled student instead of its ensemble.
        n_boot, level, seed: bootstrap resamples, interval level and seed (same seed, same interval).
        echo: progress lines (None: silent).

    Returns:
        An :class:`Evaluation` (``.to_dict()``, ``.render()``).

    Raises:
        ConfigError: ``path`` is neither a bundle nor a run directory.
        DataError: a run without a bundle, an unreadable bundle or data source, a bundle
            without a student when ``student`` is set, data sharing no class with the model
            (the message lists both), or no image of a matched class.

    >>> ev = evaluate_bundle("runs/exp1", "data/ferplus")   # doctest: +SKIP
    >>> ev.accuracy, ev.excluded                          # doctest: +SKIP
    (Interval(value=0.61, low=0.6, high=0.62), {'contempt': 216})
    """
    from ferray.data import match_classes
    from ferray.predict import Bundle
    from ferray.report._bundle import load_data, predict_probs
    from ferray.report._cross_dataset import cross_dataset_scores

    say = echo or (lambda _s: None)
    bootstrap_metrics(np.zeros(0), np.zeros(0), n_boot=n_boot, level=level)  # checks them before any work
    folder = resolve_bundle(path)
    bundle = Bundle.load(folder)
    model = "student" if student else "ensemble"
    bundle.graph(student)  # a bundle without a student says so before the data is read
    ds = load_data(bundle, data, student=student, echo=lambda s: say(f"evaluate: {s}"))
    data_classes = list(ds.class_names)
    model_classes = bundle.classes
    try:
        mapping, unknown = match_classes(model_classes, data_classes)
    except DataError as exc:
        raise DataError(f"{data} cannot be scored by the bundle {folder}: {exc}") from None
    model_index = {c: i for i, c in enumerate(model_classes)}
    to_model = np.array([model_index[mapping[c]] if c in mapping else -1 for c in data_classes], np.int64)
    target = to_model[ds.labels]
    known = target >= 0
    if not known.any():
        raise DataError(
            f"{data}: no image of a class the model knows; its {len(ds)} images are all of "
            f"{unknown}, and the model's classes are {model_classes}"
        )

    probs = predict_probs(bundle, ds, data, student=student, echo=lambda s: say(f"evaluate: {s}"))
    say(f"evaluate: bootstrap intervals ({n_boot} resamples, seed {seed})")
    scores = cross_dataset_scores(ds.labels, probs, model_classes, data_classes, n_boot=n_boot, level=level, seed=seed)
    pred = probs.argmax(axis=1)
    per = per_class_metrics(target[known], probs[known], model_classes)
    matched_model = [c for c in model_classes if c in mapping.values()]
    data_of = {m: d for d, m in mapping.items()}
    per_class = {c: {"data_class": data_of[c], **per[c]} for c in matched_model}
    unseen = [c for c in model_classes if c not in mapping.values()]
    excluded_predicted = {}
    for name in scores["excluded"]:
        said = np.bincount(pred[ds.labels == data_classes.index(name)], minlength=len(model_classes))
        excluded_predicted[name] = {c: int(said[i]) for i, c in enumerate(model_classes) if said[i]}
    said_known = np.bincount(pred[known], minlength=len(model_classes))
    return Evaluation(
        bundle=folder,
        source=str(data),
        model=model,
        model_classes=model_classes,
        data_classes=data_classes,
        rows=len(ds),
        scored_rows=scores["rows"],
        matched=dict(mapping),
        excluded=scores["excluded"],
        excluded_predicted=excluded_predicted,
        unseen=unseen,
        unseen_predicted={c: int(said_known[model_index[c]]) for c in unseen},
        accuracy=scores["accuracy"],
        macro_f1=scores["macro_f1"],
        balanced_accuracy=balanced_accuracy(
            target[known], probs[known], labels=[model_index[c] for c in matched_model]
        ),
        per_class=per_class,
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
