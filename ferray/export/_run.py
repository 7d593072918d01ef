"""Export a sweep's chosen ensemble (and distilled student) from its run directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ferray.errors import DataError
from ferray.run.layout import DistillLayout, RunLayout
from ferray.run.weights import WeightsMeta

__all__ = ["export_run", "find_student", "read_ensemble_summary"]


def read_ensemble_summary(path: str | os.PathLike) -> dict:
    """The chosen ensemble of ``ensemble.json`` (written by :func:`ferray.ensemble.build_ensembles`).

    Returns ``{"method", "members" (trial ids), "weights" (or None), "stacker" (or None),
    "scores" (the method's ``oof_*``/``holdout_*``), "chosen_by", "member_info", "latency"}``;
    ``latency`` is ``{"max_latency_ms", "latency_ms"}``: the budget the ensemble was chosen
    under and its members' summed batch-1 latency (each ``None`` when absent).

    ``ferray.ensemble`` writes ``"chosen"``, ``"members": [{"trial_id", ...}]`` (the chosen
    method's) and ``"methods": {name: {"members": [ids], "weights": [...]} | {"members", "coef",
    "intercept", "features", "eps"}}``: the chosen method's ``members`` are read (each method has
    its own: greedy picks from a wider pool than the others), else the top-level list (files
    from before per-method members, whose weights align with it). A hand-written
    ``{"method", "members": [ids], "weights" | "stacker"}`` is read too.

    Raises:
        DataError: the file is missing or unreadable, or lacks the method or the members;
            the message names the file and the key.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no ensemble summary; run `ferray ensemble RUN` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ensemble summary ({exc})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object")
    method = doc.get("chosen") or doc.get("method")
    if isinstance(method, dict):
        method = method.get("method") or method.get("name")
    if not isinstance(method, str):
        raise DataError(f"{path}: no chosen ensemble method ('chosen' or 'method')")
    section = doc
    methods = doc.get("methods")
    if isinstance(methods, dict):
        if not isinstance(methods.get(method), dict):
            raise DataError(f"{path}: chosen method {method!r} is not among methods {sorted(methods)}")
        section = methods[method]
    members = section.get("members", doc.get("members"))
    if not isinstance(members, list) or not members:
        raise DataError(f"{path}: no 'members' (the trial ids of the ensemble)")
    ids = []
    for m in members:
        tid = m if isinstance(m, str) else (m.get("trial_id") or m.get("name") if isinstance(m, dict) else None)
        if not isinstance(tid, str):
            raise DataError(f"{path}: member {m!r} has no trial id")
        ids.append(tid)
    scores = {k: v for k, v in section.items() if k.startswith(("oof_", "holdout_")) and k != "oof_source"}
    top_level = doc.get("members") if isinstance(doc.get("members"), list) else []
    info = {m.get("trial_id"): m for m in [*top_level, *members] if isinstance(m, dict)}
    out: dict = {
        "method": method,
        "members": ids,
        "weights": None,
        "stacker": None,
        "scores": scores,
        "chosen_by": doc.get("chosen_by"),
        "member_info": [info[t] for t in ids if t in info],
        "latency": {"max_latency_ms": doc.get("max_latency_ms"), "latency_ms": doc.get("latency_ms")},
    }
    if method == "stacking":
        stacker = section.get("stacker", section)
        if not isinstance(stacker, dict) or "coef" not in stacker or "intercept" not in stacker:
            raise DataError(f"{path}: method 'stacking' without 'coef' and 'intercept'")
        out["stacker"] = stacker
    else:
        weights = section.get("weights")
        if isinstance(weights, dict):
            weights = [weights[t] for t in ids]
        out["weights"] = weights
    return out


def find_student(run: RunLayout) -> DistillLayout | None:
    """The distilled student (``RUN/distill``, a trial-shaped folder), or None when there is none."""
    distill = run.distill_files
    if distill.weights_dir.is_dir() and any(distill.weights_dir.glob("fold_*.safetensors")):
        return distill
    return None


def _student(run: RunLayout):
    """The student as a member, with its section of ``distill.json`` as its score."""
    from ferray.export._members import Member

    folder = find_student(run)
    if folder is None:
        return None
    member = Member.from_trial(folder, name="student")
    try:
        doc = json.loads(folder.summary.read_text())
    except (OSError, json.JSONDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("student"), dict):
        member.score = doc["student"]
    return member


def export_run(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, echo: Callable[[str], None] | None = None
) -> Path:
    """Export a run's chosen ensemble and its student (if distilled) as a bundle.

    Reads ``<run>/ensemble/ensemble.json`` (``ferray ensemble``) for the members, method and
    weights or stacker, ``<run>/distill/weights/fold_0.safetensors`` (``ferray distill``) for
    the student, and the members' weights from their trial folders. Writes to ``out`` (default ``<run>/bundle``).

    The manifest's ``calibration`` holds the temperature fitted on the chosen ensemble's
    out-of-fold predictions (``<run>/ensemble/oof.parquet``), judged on its holdout rows; the
    student keeps ``T = 1`` unless it has out-of-fold rows of its own (see
    :mod:`ferray.export._calibrate`).

    >>> export_run("runs/exp1")  # doctest: +SKIP
    PosixPath('runs/exp1/bundle')
    """
    from ferray.export._bundle import export_bundle

    run = RunLayout(Path(run_dir))
    if not run.root.is_dir():
        raise DataError(f"{run.root}: no such run directory")
    summary_path = run.ensemble_files.summary
    summary = read_ensemble_summary(summary_path)
    members = []
    for tid in summary["members"]:
        trial = run.trial(tid)
        if not trial.root.is_dir():
            raise DataError(f"{summary_path}: member {tid!r} has no trial folder {trial.root}")
        members.append(trial)
    student = _student(run)
    calibration = _calibration(run, summary, members, student)
    extra = {"run": {"name": run.name, "path": str(run.root.absolute())}}
    if run.manifest.is_file():
        try:
            doc = json.loads(run.manifest.read_text())
            extra["run"]["created"] = doc.get("created")
            extra["run"]["spec"] = (doc.get("spec") or {}).get("name")
        except (OSError, json.JSONDecodeError):
            pass
    extra["ensemble_summary"] = {
        "file": str(summary_path),
        "chosen_by": summary["chosen_by"],
        "scores": summary["scores"],
        "members": summary["member_info"],
    }
    return export_bundle(
        members,
        out if out is not None else run.bundle,
        method=summary["method"],
        weights=summary["weights"],
        stacker=summary["stacker"],
        student=student,
        manifest_extra=extra,
        calibration=calibration,
        latency=summary["latency"],
        echo=echo,
    )


def _calibration(run: RunLayout, summary: dict, trials: list, student) -> dict | None:
    """The temperature of each graph: the ensemble's from its out-of-fold rows, the student's if it has any."""
    from ferray.export._calibrate import ensemble_calibration, student_calibration
    from ferray.training.weights import read_weights_meta

    first = sorted(trials[0].weights_dir.glob("fold_*.safetensors"))
    if not first:
        return None  # export_bundle names the member without weights
    classes = WeightsMeta.from_dict(read_weights_meta(first[0]), source=first[0]).class_names
    out = {
        "ensemble": ensemble_calibration(
            run.ensemble_files, method=summary["method"], members=summary["members"], classes=classes
        )
    }
    if student is not None:
        out["student"] = student_calibration(run.distill_files, classes=classes)
    return out
