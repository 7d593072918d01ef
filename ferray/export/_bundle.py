"""Write a bundle: the members' (and student's) weights, the ensemble (and student) as ONNX, a manifest.

Each weight is stored once: the weights files are hard links to the trials' files where the
file system allows (a copy where it does not), and the ONNX graphs read their weights from
those files (ONNX external data at the tensor's offset, :mod:`ferray.export._external`).
The manifest lists every file with its sha256; each graph's entry lists the files it reads.

The bundle is built in a temporary folder beside ``out_dir`` and renamed into place, so a
reader never sees half a bundle; an existing bundle at ``out_dir`` is replaced, any other
non-empty folder is refused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ferray._io import replace_folder
from ferray.errors import DataError
from ferray.export._calibrate import check_calibration
from ferray.export._external import link_initializers
from ferray.export._graph import (
    EnsembleGraph,
    FoldMean,
    ModelGraph,
    Preprocess,
    build_combiner,
)
from ferray.export._members import Member, as_member, check_compatible, unique_names
from ferray.export._onnx import INPUT_NAME, TOLERANCE, check_onnx, export_onnx
from ferray.metrics.calibration import describe_calibration
from ferray.run.layout import BundleLayout

__all__ = ["export_bundle", "sha256_file"]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str | None]:
    from ferray import __version__

    out: dict[str, str | None] = {"ferray": __version__, "python": platform.python_version()}
    for dist in ("torch", "timm", "onnx", "onnxruntime", "onnxscript", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _preprocess(member: Member) -> Preprocess:
    norm = member.normalise
    return Preprocess(norm.get("mean", 0.5), norm.get("std", 0.5), channels=member.in_chans)


def _input_spec(member: Member) -> dict:
    return {
        "name": INPUT_NAME,
        "dtype": "uint8",
        "layout": "NHWC",
        "size": member.img_size,
        "channels": member.in_chans,
        "color": "grayscale" if member.in_chans == 1 else "rgb",
        "range": [0, 255],
    }


def export_bundle(
    members: Sequence[str | os.PathLike | Member],
    out_dir: str | os.PathLike,
    *,
    method: str,
    weights: Sequence[float] | None = None,
    stacker=None,
    student: str | os.PathLike | Member | None = None,
    manifest_extra: dict | None = None,
    calibration: dict | None = None,
    latency: dict | None = None,
    tolerance: float = TOLERANCE,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Export an ensemble of trials (and optionally a student) as a self-contained bundle.

    Args:
        members: trial folders (each with ``weights/fold_<i>.safetensors``) or
            :class:`Member` objects; each member is the mean of its fold models' softmax.
        out_dir: the bundle folder to write (replaced when it already holds a bundle).
        method: how members combine: ``"mean"``, ``"greedy"`` (``weights``), ``"vote"``
            (optional ``weights``) or ``"stacking"`` (``stacker``).
        weights: one non-negative weight per member (normalised to sum 1).
        stacker: ``{"coef": (C, M*C), "intercept": (C,), "input": "log_proba"|"proba",
            "eps": 1e-7}`` or a fitted object with ``coef_`` and ``intercept_``:
            ``probs = softmax(concat_m log(clip(p_m, eps, 1)) @ coef.T + intercept)``.
        student: a trial-like folder or :class:`Member` exported alone as ``student.onnx``.
        manifest_extra: JSON-able facts stored under the manifest's ``"extra"`` key.
        calibration: the temperature of each graph, ``{"ensemble": entry, "student": entry}``,
            each entry from :func:`ferray.export.fit_calibration` (fitted on rows the graph's
            models never trained on) or :func:`ferray.export.no_calibration`; a graph without
            an entry keeps ``T = 1`` and the manifest says why. Stored as the manifest's
            ``"calibration"``; ``ferray predict`` applies ``softmax(log p / T)``.
        latency: the ensemble's latency as chosen, stored as the manifest's
            ``ensemble.latency``: ``{"max_latency_ms": the budget it was chosen under (or None),
            "latency_ms": the sum of its members' batch-1 latencies, each its trial's measured
            latency_ms times its fold models (or None when one was not measured)}``.
        tolerance: largest accepted ``max |onnxruntime - PyTorch|``.
        echo: called with a line per step (progress); None is silent.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: unknown method, weights/stacker that do not fit the members, or a
            calibration entry for an unknown graph or with a temperature that is not > 0.
        DataError: a member without weights, members of different classes/input format,
            or ``out_dir`` is a non-empty folder that is not a bundle.
        ExportError: a graph failed to export or disagrees with PyTorch beyond ``tolerance``.
    """
    say = echo or (lambda _line: None)
    out = Path(out_dir).absolute()
    if not members:
        raise DataError("export_bundle: no members given")
    _check_target(out)
    members, weights, pruned = _prune(list(members), method, weights)
    members = [as_member(m) for m in members]
    unique_names(members, reserved={"student"} if student is not None else set())
    check_compatible(members)
    student_m = as_member(student, name="student") if student is not None else None
    first = members[0]
    if student_m is not None:
        for label, a, b in (
            ("classes", student_m.classes, first.classes),
            ("in_chans", student_m.in_chans, first.in_chans),
        ):
            if a != b:
                raise DataError(f"student {student_m.name!r}: {label} is {a!r}, but the ensemble's is {b!r}")
    classes = first.classes
    combiner = build_combiner(method, n_members=len(members), n_classes=len(classes), weights=weights, stacker=stacker)
    calibration_doc = check_calibration(calibration, ["ensemble"] + (["student"] if student_m is not None else []))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        layout = BundleLayout(tmp)
        member_docs = [_copy_weights(m, layout, m.name) for m in members]
        student_doc = _copy_weights(student_m, layout, "student") if student_m is not None else None
        graphs: dict[str, dict] = {}
        n_models = sum(len(m.models) for m in members)
        say(f"exporting {BundleLayout.ENSEMBLE}: {len(members)} member(s), {n_models} model(s), method {method}")
        graph = EnsembleGraph([FoldMean(m.models) for m in members], combiner, _preprocess(first))
        graphs["ensemble"] = _export_graph(
            graph,
            layout.ensemble,
            first,
            ["probs", "member_probs"],
            weights=[tmp / f for doc in member_docs for f in doc["weights"]],
            parts={"member_probs": [m.name for m in members]},
            tolerance=tolerance,
            say=say,
        )
        if student_m is not None:
            say(f"exporting {BundleLayout.STUDENT}: {student_m.name} ({len(student_m.models)} model(s))")
            sgraph = ModelGraph(FoldMean(student_m.models), _preprocess(student_m))
            graphs["student"] = _export_graph(
                sgraph,
                layout.student,
                student_m,
                ["probs"],
                weights=[tmp / f for f in student_doc["weights"]],
                parts=None,
                tolerance=tolerance,
                say=say,
            )
        manifest = _manifest(
            members, member_docs, student_doc, graphs, classes, method, combiner, first, manifest_extra
        )
        if pruned:
            manifest["ensemble"]["pruned"] = pruned
        if latency is not None:
            manifest["ensemble"]["latency"] = latency
        manifest["calibration"] = calibration_doc
        say("calibration: " + "; ".join(f"{g} {describe_calibration(calibration_doc[g])}" for g in graphs))
        manifest["files"] = {
            p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        layout.manifest.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {out}")
    return out


def _prune(members: list, method: str, weights) -> tuple[list, list | None, list[str]]:
    """Greedy selection gives never-picked members weight 0: they are left out of the graph."""
    if method != "greedy" or weights is None or len(weights) != len(members):
        return members, weights, []
    keep = [i for i, w in enumerate(weights) if float(w) != 0.0]
    if not keep or len(keep) == len(members):
        return members, weights, []
    pruned = [_name_of(m) for i, m in enumerate(members) if i not in keep]
    return [members[i] for i in keep], [weights[i] for i in keep], pruned


def _name_of(member) -> str:
    if isinstance(member, Member):
        return member.name
    return getattr(member, "trial_id", None) or Path(member).name


def _export_graph(
    module, path: Path, member: Member, outputs: list[str], *, weights: list[Path], parts, tolerance: float, say
) -> dict:
    """Export ``module`` to ``path``, point its initializers at ``weights`` and check the result against PyTorch."""
    what = path.name
    info = export_onnx(module, path, size=member.img_size, channels=member.in_chans, output_names=outputs, what=what)
    linked = link_initializers(path, path.parent, weights)
    info["external_data"] = bool(linked["files"])
    diff = check_onnx(
        module,
        path,
        size=member.img_size,
        channels=member.in_chans,
        output_names=outputs,
        what=what,
        parts=parts,
        tolerance=tolerance,
    )
    say(
        f"  {what}: {info['exporter']} exporter, opset {info['opset']}, max |onnxruntime - torch| {diff:.2g}; "
        f"{_mb(linked['linked_bytes'] + linked['float16_bytes'])} of weights read from {len(linked['files'])} "
        f"weights file(s), {_mb(linked['embedded_bytes'])} in the graph"
    )
    return {
        "file": path.name,
        "files": [path.name] + linked["files"],
        "initializers": {k: linked[k] for k in ("linked_bytes", "float16_bytes", "embedded_bytes")},
        "input": _input_spec(member),
        "outputs": outputs,
        **info,
        "max_abs_diff": diff,
        "tolerance": tolerance,
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _link_or_copy(src: str | os.PathLike, dst: Path) -> None:
    """A hard link where the file system allows (the bytes are stored once; trials' weights
    files are replaced, never edited in place, so the bundle's copy cannot change), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _copy_weights(member: Member, layout: BundleLayout, folder: str) -> dict:
    doc = member.describe()
    doc["name"] = folder
    files = []
    for i, model in enumerate(member.models):
        dst = layout.weights(folder, i)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if i < len(member.weight_files):
            _link_or_copy(member.weight_files[i], dst)
        else:
            from ferray.training.weights import save_weights

            save_weights(model, dst, replace(member.meta, fold=i, k=len(member.models)).to_dict())
        files.append(dst.relative_to(layout.root).as_posix())
    doc["weights"] = files
    return doc


def _manifest(
    members: list[Member],
    member_docs: list[dict],
    student_doc: dict | None,
    graphs: dict,
    classes: list[str],
    method: str,
    combiner,
    first: Member,
    extra: dict | None,
) -> dict:
    fingerprints = {m.meta.data_fingerprint or None for m in members}
    train = first.meta.train or {}
    folds = train.get("folds") or {}
    exporters = sorted({g["exporter"] for g in graphs.values()})
    return {
        "format": BundleLayout.FORMAT,
        "kind": "ferray-bundle",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "classes": classes,
        "input": graphs["ensemble"]["input"],
        "normalise": {**first.normalise, "in_graph": True},
        "graphs": graphs,
        "ensemble": {"method": method, **combiner.describe(), "members": member_docs},
        "student": student_doc,
        "data": {
            "fingerprint": fingerprints.pop() if len(fingerprints) == 1 else None,
            "fold_seed": folds.get("seed"),
            "k": first.meta.k,
        },
        "exporter": exporters[0] if len(exporters) == 1 else exporters,
        "versions": _versions(),
        "extra": extra or {},
    }


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"manifest value {obj!r} ({type(obj).__name__}) is not JSON-able")


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another bundle path")
    if out.is_dir() and any(out.iterdir()) and not BundleLayout(out).manifest.is_file():
        raise DataError(
            f"{out}: a non-empty folder that is not a ferray bundle (no {BundleLayout.MANIFEST}); "
            "refusing to replace it"
        )
