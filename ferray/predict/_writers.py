"""Write predictions as CSV, JSON or a plain-text table."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ferray._io import atomic_write_text
from ferray.errors import DataError
from ferray.predict._predict import Predictions

__all__ = ["OUTPUT_SUFFIXES", "format_table", "write_csv", "write_json", "write_predictions"]

#: ``--out`` suffixes and their writers.
OUTPUT_SUFFIXES = (".csv", ".json")


def _columns(preds: Predictions) -> list[str]:
    return (
        ["source", "face", "x", "y", "w", "h", "label", "score"]
        + [f"prob_{c}" for c in preds.classes]
        + ["temperature"]
    )


def write_csv(preds: Predictions, path: str | os.PathLike) -> Path:
    """One row per prediction: source, face, box (x, y, w, h), label, score, ``prob_<class>``...,
    ``temperature`` (the ``T`` of ``softmax(log p / T)`` applied to the probabilities; 1 for raw).

    Skipped inputs are rows with an empty label and the reason in ``error`` (last column).
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(_columns(preds) + ["error"])
    for p in preds:
        box = list(p.box) if p.box else ["", "", "", ""]
        writer.writerow(
            [
                p.source,
                "" if p.face is None else p.face,
                *box,
                p.label,
                f"{p.score:.6f}",
                *(f"{p.probs[c]:.6f}" for c in preds.classes),
                f"{preds.temperature:.6g}",
                "",
            ]
        )
    for s in preds.skipped:
        writer.writerow([s.source] + [""] * (len(_columns(preds)) - 1) + [s.reason])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def write_json(preds: Predictions, path: str | os.PathLike) -> Path:
    """``{"bundle", "model", "tta", "calibrated", "temperature", "calibration", "classes", "predictions": [...],
    "skipped": [...]}``."""
    doc = {
        "bundle": preds.bundle,
        "model": preds.model,
        "tta": preds.tta,
        "calibrated": preds.calibrated,
        "temperature": preds.temperature,
        "calibration": preds.calibration,
        "classes": preds.classes,
        "predictions": [p.to_dict() for p in preds],
        "skipped": [s.to_dict() for s in preds.skipped],
    }
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return Path(path)


def write_predictions(preds: Predictions, path: str | os.PathLike) -> Path:
    """CSV or JSON by ``path``'s suffix.

    Raises:
        DataError: any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_csv(preds, path)
    if suffix == ".json":
        return write_json(preds, path)
    raise DataError(f"--out {path}: suffix {suffix or '(none)'!r}; use .csv or .json")


def format_table(preds: Predictions, *, max_rows: int | None = None) -> str:
    """A plain-text table: source, face, label, score and each class's probability."""
    header = ["source", "face", "label", "score"] + list(preds.classes)
    rows = [
        [
            p.source,
            "" if p.face is None else str(p.face),
            p.label,
            f"{p.score:.3f}",
            *(f"{p.probs[c]:.3f}" for c in preds.classes),
        ]
        for p in preds[:max_rows]
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for r in rows:
        lines.append("  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    if max_rows is not None and len(preds) > max_rows:
        lines.append(f"... {len(preds) - max_rows} more (use --out FILE.csv for all)")
    return "\n".join(lines)
