"""``explain``: heat maps of a bundle's or a run's models for images, written as overlay PNGs.

For an ensemble, each member's map is the mean of its fold models' maps, and the ensemble
map is the ensemble-weighted mean of the members' maps (the weights the ensemble combines
their probabilities with; uniform for stacking). Images of another size or channel count
are converted as training data was (Pillow's ITU-R 601-2 luma, bilinear resize).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferray._io import atomic_write_json
from ferray.errors import ConfigError, DataError, closest
from ferray.explain._cam import (
    CLASS_AGNOSTIC,
    FILE_TAGS,
    CAMExplainer,
    check_ig_steps,
    check_method,
    ig_map,
    integrated_gradients,
)
from ferray.explain._models import (
    ExplainMember,
    ExplainSource,
    describe,
    load_explain_source,
)
from ferray.explain._overlay import Panel, save_grid, save_overlay
from ferray.metrics.calibration import apply_temperature
from ferray.predict._faces import resolve_detector
from ferray.predict._inputs import collect_inputs, load_crops
from ferray.run.layout import ReportLayout, RunLayout
from ferray.training.augment import apply_batch, build_eval_transform

__all__ = ["explain", "Explanation", "ExplainedImage", "member_maps", "EXPLAIN_JSON", "GRID_FILE", "MAX_GRID_ROWS"]

EXPLAIN_JSON = "explain.json"
GRID_FILE = "grid.png"
#: The grid shows at most this many images (every image still gets its own overlay PNG).
MAX_GRID_ROWS = 32


@dataclass
class ExplainedImage:
    """One explained image (or face of a photo).

    Attributes:
        source: the input's name; ``face``/``box``: the face's index and box with ``faces=True``.
        image: the ``uint8 (H, W, C)`` image the models saw.
        probs: the explained model's class probabilities (the ensemble's, or the one member's).
        member_probs: each member's probabilities (the mean of its fold models' softmax).
        target: the class index the maps explain.
        maps: each member's map ``(H, W)`` in ``[0, 1]``; ``ensemble_map`` the weighted mean (or None).
        file: the overlay PNG.
    """

    source: str
    image: np.ndarray
    probs: np.ndarray
    member_probs: dict[str, np.ndarray]
    target: int
    maps: dict[str, np.ndarray]
    ensemble_map: np.ndarray | None = None
    face: int | None = None
    box: tuple[int, int, int, int] | None = None
    file: Path | None = None

    @property
    def map(self) -> np.ndarray:
        """The map of the explained model: the ensemble's, or the single member's."""
        return self.ensemble_map if self.ensemble_map is not None else next(iter(self.maps.values()))


@dataclass
class Explanation:
    """What :func:`explain` returns: the images with their maps, and where the files are."""

    out_dir: Path | None
    method: str
    classes: list[str]
    images: list[ExplainedImage]
    skipped: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    grid: Path | None = None


def _resolve_target(target: int | str | None, classes: Sequence[str]) -> int | None:
    if target is None:
        return None
    if isinstance(target, str) and target.lstrip("-").isdigit():
        target = int(target)
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < len(classes):
            raise ConfigError(
                f"target class {target} does not exist; classes: "
                + ", ".join(f"{i} ({c})" for i, c in enumerate(classes))
            )
        return target
    if target in classes:
        return list(classes).index(target)
    raise ConfigError(f"unknown target class {target!r}{closest(str(target), classes)}; classes: {', '.join(classes)}")


def _load_images(images, size: int, channels: int, faces) -> tuple[list[tuple], list[dict]]:
    """``[(source, face, box, uint8 (size, size, C))]`` and the skipped inputs (as ``predict`` reads them)."""

    detector = resolve_detector(faces)
    _, items = collect_inputs(images)
    out, skipped = [], []
    for item in items:
        try:
            out += [(item.source, face, box, crop) for face, box, crop in load_crops(item, size, channels, detector)]
        except DataError as exc:
            skipped.append({"source": item.source, "reason": str(exc)})
    return out, skipped


@torch.no_grad()
def _member_probs(member: ExplainMember, x: torch.Tensor) -> np.ndarray:
    return np.mean([m(x)["logits"].float().softmax(dim=-1).numpy() for m in member.models], axis=0)


def member_maps(
    member: ExplainMember,
    x: torch.Tensor,
    targets: Sequence[int],
    method: str,
    *,
    layer: str | None = None,
    ig_steps: int = 32,
    explainers: dict | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """A member's maps ``(N, H, W)`` in ``[0, 1]``: the mean of its fold models' maps, and the target layer.

    For ``ig`` the fold models' attributions are averaged before the map is taken (integrated
    gradients are linear in the model).
    """
    if method == "ig":
        attr = sum(integrated_gradients(m, x, targets, steps=ig_steps) for m in member.models) / len(member.models)
        return ig_map(attr), [{"path": "input", "grid": [int(x.shape[2]), int(x.shape[3])], "note": ""}]
    explainers = {} if explainers is None else explainers
    for m in member.models:
        if id(m) not in explainers:
            explainers[id(m)] = CAMExplainer(m, method, layer=layer)
    cams = [explainers[id(m)] for m in member.models]
    maps = np.mean([cam(x, targets) for cam in cams], axis=0).astype(np.float32)
    t = cams[0].target_layer_
    return maps, [{"path": t.path, "grid": list(t.grid), "note": t.note}]


def _stem(source: str, face: int | None, index: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source.split(":")[0]).stem).strip("_")[:60] or "image"
    return f"{index:03d}_{name}" + (f"_face{face}" if face is not None else "")


def _title(classes: Sequence[str], probs: np.ndarray) -> str:
    k = int(np.argmax(probs))
    return f"{classes[k]} {probs[k]:.2f}"


def explain(
    bundle_or_run: str | os.PathLike,
    images,
    *,
    method: str = "gradcam",
    target: int | str | None = None,
    member: int | str | None = None,
    out: str | os.PathLike | None = None,
    faces: bool | Callable = False,
    layer: str | None = None,
    ig_steps: int = 32,
    batch_size: int = 16,
    write: bool = True,
    echo: Callable[[str], Any] | None = None,
) -> Explanation:
    """Heat maps of what a bundle's (or run's) models look at in ``images``.

    Args:
        bundle_or_run: an exported bundle (needs its ``weights/`` safetensors copies) or a run
            directory (its ensemble's members, else its best trial).
        images: an image file, a folder, a CSV with a ``path`` or ``pixels`` column, a list of
            paths, or a ``uint8`` array ``(N, H, W[, C])`` (as :func:`ferray.predict.predict`).
        method: ``gradcam``, ``gradcam++``, ``scorecam``, ``eigencam``, ``layercam``,
            ``hirescam`` (pytorch-grad-cam) or ``ig`` (integrated gradients, captum).
        target: the class to explain (name or index); default each image's predicted class.
        member: one member (index or name), ``"student"``, or None for the whole ensemble.
        out: the output folder (default: ``RUN/report/explain``, or ``<bundle>-report/explain``).
        faces: ``True`` finds faces on whole photos (OpenCV Haar cascade) and explains each.
        layer: a CAM target layer path below the backbone instead of the family's choice.
        ig_steps: integration steps of ``ig`` (>= 2).
        batch_size: images per forward pass.
        write: write the PNGs and ``explain.json`` (``False``: return the maps only).
        echo: progress lines (None: silent).

    Returns:
        An :class:`Explanation`; ``out/`` holds one overlay PNG per image (the face, the
        ensemble's map and each member's, with the predicted class and probability and the
        target class), named ``000_<image>_<method>.png`` with the method's file tag
        (``gradcam++`` -> ``gradcampp``), ``grid.png`` and ``explain.json`` (top classes and files).

    Raises:
        ConfigError: an unknown method, class or member (the message lists the valid ones),
            a backbone without a known CAM layer (the message names ``ig``), or ``ig_steps`` < 2.
        DataError: a bundle without safetensors weights, or no readable image.

    >>> explain("runs/exp1/bundle", "faces/", method="gradcam++", target="happy")  # doctest: +SKIP
    """
    say = echo or (lambda _s: None)
    check_method(method)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size!r}, but must be an integer >= 1")
    if method == "ig":
        check_ig_steps(ig_steps)
    source: ExplainSource = load_explain_source(bundle_or_run, member)
    classes = source.classes
    fixed_target = _resolve_target(target, classes)
    loaded, skipped = _load_images(images, source.img_size, source.in_chans, faces)
    for s in skipped:
        say(f"explain: skipped {s['source']}: {s['reason']}")
    if not loaded:
        why = f" ({len(skipped)} skipped: {skipped[0]['reason']})" if skipped else ""
        raise DataError(f"no image to explain{why}")

    batch = np.stack([im for *_, im in loaded])
    weights = source.weights()
    to_input = build_eval_transform(source.img_size, source.in_chans)
    # the exported ensemble graph gives the whole ensemble's probabilities (exact for every method),
    # with the bundle's temperature as `ferray predict` applies it
    graph = source.bundle if source.bundle is not None and source.all_members and len(source.members) > 1 else None
    temperature = graph.temperature() if graph is not None else None
    say(f"explain: {len(loaded)} image(s), {len(source.members)} member(s), method {method}")

    results: list[ExplainedImage] = []
    explainers: dict = {}
    layers: dict[str, list[dict]] = {}
    for start in range(0, len(batch), batch_size):
        imgs = batch[start : start + batch_size]
        x = torch.from_numpy(apply_batch(to_input, imgs))
        mprobs = {m.name: _member_probs(m, x) for m in source.members}
        if len(source.members) == 1:
            probs = next(iter(mprobs.values()))
        elif graph is not None:
            probs = apply_temperature(graph.run(imgs), temperature)
        else:
            probs = sum(w * p for w, p in zip(weights, mprobs.values()))
        targets = [fixed_target if fixed_target is not None else int(np.argmax(p)) for p in probs]
        maps = {}
        for m in source.members:
            maps[m.name], layers[m.name] = member_maps(
                m, x, targets, method, layer=layer, ig_steps=ig_steps, explainers=explainers
            )
        ens = None
        if len(source.members) > 1:
            ens = np.tensordot(weights, np.stack([maps[m.name] for m in source.members]), axes=1).astype(np.float32)
        for i in range(len(imgs)):
            src, face, box, img = loaded[start + i]
            results.append(
                ExplainedImage(
                    src,
                    img,
                    np.asarray(probs[i]),
                    {k: v[i] for k, v in mprobs.items()},
                    targets[i],
                    {k: v[i] for k, v in maps.items()},
                    None if ens is None else ens[i],
                    face,
                    box,
                )
            )

    summary = {
        **describe(source),
        "method": method,
        "ensemble_method": source.method,
        "class_agnostic": method in CLASS_AGNOSTIC,
        "target": None if fixed_target is None else classes[fixed_target],
        "target_layers": layers,
        "skipped": skipped,
    }
    if graph is not None:
        summary["ensemble_probs"] = "the bundle's ensemble.onnx"
        summary["temperature"] = temperature
    elif len(source.members) > 1:
        summary["ensemble_probs"] = "the weighted mean of the members' probabilities"
    expl = Explanation(None, method, classes, results, skipped, summary)
    if write:
        _write(expl, source, out, say)
    return expl


def _default_out(source: ExplainSource) -> Path:
    if source.kind == "run":
        return RunLayout(source.path).report_files.explain
    return ReportLayout(source.path.parent / f"{source.path.name}-report").explain


def _write(expl: Explanation, source: ExplainSource, out, say) -> None:
    out_dir = Path(out).absolute() if out is not None else _default_out(source)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = expl.classes
    agnostic = expl.summary["class_agnostic"]
    rows = []
    records = []
    for i, item in enumerate(expl.images):
        what = "ensemble" if item.ensemble_map is not None else source.members[0].name
        panels = [Panel(f"{what}: {_title(classes, item.probs)}", None)]
        if item.ensemble_map is not None:
            panels.append(Panel(f"ensemble map ({expl.method})", item.ensemble_map))
        for name, m in item.maps.items():
            panels.append(Panel(f"{name}: {_title(classes, item.member_probs[name])}", m))
        tgt = "class-agnostic" if agnostic else f"target {classes[item.target]}"
        head = (
            f"{item.source}"
            + (f" face {item.face}" if item.face is not None else "")
            + f": {what} predicts {_title(classes, item.probs)}; {expl.method}, {tgt}"
        )
        name = f"{_stem(item.source, item.face, i)}_{FILE_TAGS[expl.method]}.png"
        item.file = save_overlay(out_dir / name, item.image, panels, head)
        if len(rows) < MAX_GRID_ROWS:
            rows.append((item.image, panels, f"{Path(item.source).name[:24]}\n{tgt}"))
        order = np.argsort(-item.probs)[:3]
        records.append(
            {
                "source": item.source,
                "face": item.face,
                "box": list(item.box) if item.box else None,
                "predicted": {"class": classes[int(order[0])], "prob": float(item.probs[order[0]])},
                "top": [{"class": classes[int(k)], "prob": float(item.probs[k])} for k in order],
                "target": classes[item.target],
                "members": {
                    n: {"class": classes[int(np.argmax(p))], "prob": float(np.max(p))}
                    for n, p in item.member_probs.items()
                },
                "file": item.file.name,
            }
        )
    shown = f" (first {MAX_GRID_ROWS} of {len(expl.images)})" if len(expl.images) > MAX_GRID_ROWS else ""
    expl.grid = save_grid(out_dir / GRID_FILE, rows, f"{expl.method} on {len(rows)} image(s){shown}")
    expl.out_dir = out_dir
    expl.summary.update(images=records, grid=GRID_FILE)
    atomic_write_json(out_dir / EXPLAIN_JSON, expl.summary)
    say(f"explain: wrote {len(records)} overlay(s) and {GRID_FILE} to {out_dir}")
