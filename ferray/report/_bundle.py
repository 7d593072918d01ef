"""The report of an exported bundle, and cross-dataset evaluation with ``--data``.

A bundle holds no predictions; without data its report is what the manifest records (members,
method, their cross-validation scores). With ``data`` the bundle predicts every image of
another dataset through :func:`ferray.predict.predict` (onnxruntime, as users run it), and
the dataset's classes are matched to the model's by name with :func:`ferray.data.match_classes`
(``happiness`` is ``happy``, ``anger`` is ``angry``, ...).
Rows of a class the model does not know are listed with what the model called them, never
silently dropped; they do not enter the scores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ferray._io import json_safe
from ferray.errors import DataError
from ferray.report._evaluate import Split, evaluate_model

__all__ = ["collect_bundle", "cross_dataset", "load_data", "predict_probs"]


def _manifest_section(bundle) -> dict:
    m = bundle.manifest
    ens = m.get("ensemble") or {}
    extra = m.get("extra") or {}
    members = [
        {
            "name": x.get("name"),
            "trial_id": x.get("trial_id"),
            "backbone": x.get("backbone"),
            "folds": x.get("folds"),
            "score": x.get("score"),
        }
        for x in ens.get("members", [])
    ]
    student = m.get("student") or None
    return {
        "classes": bundle.classes,
        "input": m.get("input"),
        "method": ens.get("method"),
        "weights": ens.get("weights"),
        "members": members,
        "pruned": ens.get("pruned"),
        "student": None
        if student is None
        else {"backbone": student.get("backbone"), "folds": student.get("folds"), "score": student.get("score")},
        "data": m.get("data"),
        "created": m.get("created"),
        "versions": m.get("versions"),
        "ensemble_scores": (extra.get("ensemble_summary") or {}).get("scores"),
        "calibration": _calibration_text(bundle),
        "temperature": _temperatures(bundle),
        "run": extra.get("run"),
    }


def _temperatures(bundle) -> dict:
    """The temperature ``ferray predict`` applies to each graph (1.0 where none is stored)."""
    graphs = ["ensemble"] + (["student"] if bundle.has_student else [])
    return {g: bundle.temperature(g == "student") for g in graphs}


def _calibration_text(bundle) -> str:
    """One line per graph: its stored temperature, what it was fitted on, or why it is 1."""
    from ferray.predict import calibration_note

    graphs = ["ensemble"] + (["student"] if bundle.has_student else [])
    return (
        "; ".join(f"{g}: {calibration_note(bundle, student=g == 'student')}" for g in graphs)
        + " (ferray predict applies it unless --no-calibration)"
    )


def load_data(bundle, data: str | Path, *, student: bool = False, echo: Callable[[str], Any] | None = None):
    """The dataset ``data`` (a :func:`ferray.data.load_source` source) at the bundle's input size and channels."""
    from ferray.data import load_source

    size, channels = bundle.input_size(student)
    if echo is not None:
        echo(f"loading {data} at {size}x{size}x{channels}")
    ds = load_source(str(data), size=size, channels=channels)
    if not len(ds):
        raise DataError(f"{data}: no images")
    return ds


def predict_probs(
    bundle, ds, data: str | Path, *, student: bool = False, echo: Callable[[str], Any] | None = None
) -> np.ndarray:
    """The bundle's ensemble (or student) probabilities ``(N, classes)`` for every image of ``ds``."""
    from ferray.predict import predict

    key = "student" if student else "ensemble"
    if echo is not None:
        echo(f"predicting {len(ds)} images with the bundle's {key}")
    preds = predict(bundle, ds.images, student=student, progress=False)
    if len(preds) != len(ds):
        raise DataError(f"{data}: the bundle predicted {len(preds)} of {len(ds)} images ({len(preds.skipped)} skipped)")
    return preds.probs().astype(np.float64)


def cross_dataset(bundle, data: str | Path, *, echo: Callable[[str], Any] | None = None, top_confused: int = 5) -> dict:
    """Evaluate a bundle's ensemble (and student) on another dataset; see the module docstring."""
    from ferray.data import match_classes

    say = echo or (lambda _s: None)
    ds = load_data(bundle, data, echo=lambda s: say(f"report: {s}"))
    mapping, unknown = match_classes(bundle.classes, list(ds.class_names))
    match = {"mapping": mapping, "unknown": unknown, "unseen": [c for c in bundle.classes if c not in mapping.values()]}
    model_index = {c: i for i, c in enumerate(bundle.classes)}
    data_to_model = np.array([model_index.get(match["mapping"].get(c), -1) for c in ds.class_names])
    labels_model = data_to_model[ds.labels]
    known = labels_model >= 0
    out: dict = {
        "source": str(data),
        "origin": ds.origin,
        "rows": len(ds),
        "data_classes": list(ds.class_names),
        "class_match": match,
        "scored_rows": int(known.sum()),
        "unknown_rows": {c: int(np.sum(ds.labels == i)) for i, c in enumerate(ds.class_names) if c in match["unknown"]},
        "models": {},
    }
    graphs = [("ensemble", False)] + ([("student", True)] if bundle.has_student else [])
    for key, student in graphs:
        probs = predict_probs(bundle, ds, data, student=student, echo=lambda s: say(f"report: {s}"))
        rows = np.flatnonzero(known)
        section = evaluate_model(
            f"bundle {key}",
            "bundle",
            bundle.classes,
            holdout=Split("data", rows, labels_model[known], probs[known]),
            top_confused=top_confused,
            extra={"graph": key},
        )
        # What the model called the rows of each dataset class, unknown ones included.
        table = np.zeros((len(ds.class_names), len(bundle.classes)), dtype=np.int64)
        np.add.at(table, (ds.labels, probs.argmax(axis=1)), 1)
        section["by_data_class"] = {"rows": list(ds.class_names), "columns": bundle.classes, "counts": table.tolist()}
        out["models"][key] = section
    return out


def collect_bundle(
    path: str | Path, *, data: str | Path | None = None, echo: Callable[[str], Any] | None = None, top_confused: int = 5
) -> dict:
    """The report of a bundle folder as a JSON-ready dict (see :func:`ferray.report.build_report`)."""
    from ferray.predict import Bundle

    bundle = Bundle.load(path)
    report: dict = {
        "kind": "bundle",
        "source": str(Path(path).absolute()),
        "name": Path(path).absolute().name,
        "class_names": bundle.classes,
        "bundle": _manifest_section(bundle),
        "models": {},
        "notes": [],
    }
    if data is not None:
        report["cross_dataset"] = cross_dataset(bundle, data, echo=echo, top_confused=top_confused)
    else:
        report["notes"].append("a bundle holds no predictions: pass data (--data SOURCE) to evaluate it on a dataset")
    return json_safe(report)
