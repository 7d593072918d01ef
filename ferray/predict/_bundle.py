"""Open a bundle: check its manifest and files, then run its ONNX graphs with onnxruntime.

Loading reads JSON and hands ONNX protobuf files to onnxruntime; it never unpickles or
imports anything from the bundle. Every file the manifest lists carries its size and
sha256; :meth:`Bundle.load` checks the files each graph reads (the graph, and the weights
files its initializers point into; the rest too with ``verify_weights=True``), so a
truncated download or an edited file is refused by name.

The manifest's optional ``calibration`` section holds each graph's temperature (``ferray
export`` fits the ensemble's on its out-of-fold rows); a bundle without it (written before
temperatures were stored) reads as ``T = 1``, and :meth:`Bundle.calibration` says so.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ferray.errors import DataError
from ferray.metrics.calibration import is_temperature
from ferray.run.layout import BundleLayout

__all__ = ["Bundle"]

_REQUIRED = ("format", "classes", "input", "graphs", "files")

#: What :meth:`Bundle.calibration` says of a bundle without a ``calibration`` section.
NO_CALIBRATION_STORED = "the bundle stores no temperature (exported before ferray stored one): T = 1"


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise DataError(
            "ferray predict needs onnxruntime: pip install 'ferray[predict]' (or pip install onnxruntime)"
        ) from None
    return ort


class Bundle:
    """An exported ensemble (and student): its manifest and onnxruntime sessions.

    >>> bundle = Bundle.load("runs/exp1/bundle")  # doctest: +SKIP
    >>> bundle.classes  # doctest: +SKIP
    ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral']

    Attributes:
        path: the bundle folder.
        manifest: ``manifest.json``, parsed.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._sessions: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify_weights: bool = False) -> Bundle:
        """Read and check a bundle folder.

        Args:
            path: the folder ``ferray export`` wrote.
            verify_weights: also check the sha256 of every other listed file (the graphs
                and the weights files they read are always checked).

        Raises:
            DataError: no ``manifest.json``, a manifest of a newer format, a listed file
                that is missing, truncated or modified; the message names the file.
        """
        layout = BundleLayout(Path(path))
        if not layout.root.is_dir():
            raise DataError(f"{layout.root}: no such bundle folder")
        if not layout.manifest.is_file():
            raise DataError(
                f"{layout.root}: not a ferray bundle (no {BundleLayout.MANIFEST}); create one with `ferray export RUN`"
            )
        try:
            manifest = json.loads(layout.manifest.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{layout.manifest}: unreadable bundle manifest ({exc})") from None
        if not isinstance(manifest, dict):
            raise DataError(f"{layout.manifest}: expected a JSON object")
        fmt = manifest.get("format")
        if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
            raise DataError(f"{layout.manifest}: format is {fmt!r}, but must be an integer >= 1")
        if fmt > BundleLayout.FORMAT:
            raise DataError(
                f"{layout.manifest}: bundle format {fmt} is newer than this ferray reads "
                f"(format {BundleLayout.FORMAT}); upgrade ferray to read it"
            )
        missing = [k for k in _REQUIRED if k not in manifest]
        if missing:
            raise DataError(f"{layout.manifest}: not a ferray bundle manifest (missing {', '.join(missing)})")
        bundle = cls(layout.root, manifest)
        bundle._check_structure()
        for name in bundle._graph_files():
            bundle._verify_file(name)
        if verify_weights:
            bundle.verify()
        return bundle

    # -- manifest ---------------------------------------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def format(self) -> int:
        return int(self.manifest["format"])

    @property
    def has_student(self) -> bool:
        return "student" in self.manifest["graphs"]

    @property
    def method(self) -> str | None:
        return (self.manifest.get("ensemble") or {}).get("method")

    @property
    def members(self) -> list[str]:
        return [m.get("name") for m in (self.manifest.get("ensemble") or {}).get("members", [])]

    def graph(self, student: bool = False) -> dict:
        """The manifest entry of ``ensemble.onnx`` (or ``student.onnx``): file, input, outputs."""
        key = "student" if student else "ensemble"
        graphs = self.manifest["graphs"]
        if key not in graphs:
            raise DataError(
                f"{self.path}: the bundle has no {key} model"
                + ("; export a run with a distilled student, or predict without --student" if student else "")
            )
        return graphs[key]

    def calibration(self, student: bool = False) -> dict:
        """The stored calibration of the ensemble (or student) graph.

        ``{"temperature": T, "fitted_on": "out-of-fold", "rows": n, "ece_before", "ece_after", ...}``
        as ``ferray export`` wrote it; ``fitted_on`` is None and ``reason`` says why when
        ``T`` is 1 because nothing honest was there to fit it on. A bundle without a
        ``calibration`` section gives ``{"temperature": 1.0, "fitted_on": None, "reason": ...}``.
        """
        key = "student" if student else "ensemble"
        self.graph(student)
        section = self.manifest.get("calibration")
        if section is None:
            return {"temperature": 1.0, "fitted_on": None, "reason": NO_CALIBRATION_STORED}
        entry = section.get(key)
        if entry is None:
            return {
                "temperature": 1.0,
                "fitted_on": None,
                "reason": f"the bundle's calibration has no entry for the {key}: T = 1",
            }
        return dict(entry)

    def temperature(self, student: bool = False) -> float:
        """The temperature ``T`` that :func:`ferray.predict.predict` applies by default (1.0 if none is stored)."""
        return float(self.calibration(student)["temperature"])

    def input_size(self, student: bool = False) -> tuple[int, int]:
        """``(size, channels)`` the graph takes (images are ``uint8 (N, size, size, channels)``)."""
        spec = self.graph(student)["input"]
        return int(spec["size"]), int(spec["channels"])

    def _manifest_error(self, detail: str) -> DataError:
        return DataError(f"{self.path / BundleLayout.MANIFEST}: {detail}")

    def _check_structure(self) -> None:
        m = self.manifest
        classes = m["classes"]
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise self._manifest_error(f"classes is {classes!r}, but must be a list of >= 2 names")
        if not isinstance(m["files"], dict):
            raise self._manifest_error("files must map each file to its sha256 and size")
        graphs = m["graphs"]
        if not isinstance(graphs, dict) or "ensemble" not in graphs:
            raise self._manifest_error("graphs must hold at least 'ensemble'")
        for key, g in graphs.items():
            spec = g.get("input") if isinstance(g, dict) else None
            if not isinstance(spec, dict) or not isinstance(g.get("file"), str):
                raise self._manifest_error(f"graphs.{key} needs 'file' and 'input'")
            if spec.get("dtype") != "uint8" or spec.get("layout") != "NHWC":
                raise self._manifest_error(
                    f"graphs.{key}.input is {spec.get('dtype')} {spec.get('layout')}; "
                    "this ferray feeds uint8 NHWC images"
                )
            if spec.get("channels") not in (1, 3) or not isinstance(spec.get("size"), int) or spec["size"] < 1:
                raise self._manifest_error(f"graphs.{key}.input needs channels 1 or 3 and a size >= 1")
        self._check_calibration()
        for name in m["files"]:
            p = PurePosixPath(name)
            if p.is_absolute() or ".." in p.parts or "\\" in name:
                raise self._manifest_error(f"file {name!r} lies outside the bundle")

    def _check_calibration(self) -> None:
        section = self.manifest.get("calibration")
        if section is None:
            return
        if not isinstance(section, dict):
            raise self._manifest_error(f"calibration is {section!r}, but must be an object with an entry per graph")
        for key, entry in section.items():
            if key not in ("ensemble", "student") or not isinstance(entry, dict):
                continue  # informational fields (method, ...)
            t = entry.get("temperature")
            if not is_temperature(t):
                raise self._manifest_error(
                    f"calibration.{key}.temperature is {t!r}, but must be a finite "
                    "number > 0 (1 leaves the probabilities as they are)"
                )

    def _graph_files(self) -> list[str]:
        out: dict[str, None] = {}
        for g in self.manifest["graphs"].values():
            out.update(dict.fromkeys(g.get("files") or [g["file"]]))
        return list(out)

    # -- integrity ---------------------------------------------------------------------------------------------

    def _verify_file(self, name: str) -> None:
        entry = self.manifest["files"].get(name)
        path = self.path / name
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise self._manifest_error(f"{name} is not listed with a sha256")
        if not path.is_file():
            raise DataError(f"{path}: missing from the bundle (the manifest lists it)")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise DataError(
                f"{path}: {size} bytes, but the manifest says {entry['bytes']}: truncated or "
                "modified; copy the bundle again"
            )
        if _sha256(path) != entry["sha256"]:
            raise DataError(
                f"{path}: sha256 differs from the manifest: the file was modified or corrupted; copy the bundle again"
            )

    def verify(self) -> None:
        """Check every file the manifest lists (size and sha256).

        Raises:
            DataError: naming the first missing, truncated or modified file.
        """
        for name in self.manifest["files"]:
            self._verify_file(name)

    # -- inference ---------------------------------------------------------------------------------------------

    def session(self, student: bool = False, providers: list[str] | None = None):
        """The onnxruntime session of the ensemble (or student) graph, created once."""
        key = "student" if student else "ensemble"
        if key not in self._sessions:
            ort = _import_ort()
            path = self.path / self.graph(student)["file"]
            try:
                self._sessions[key] = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                raise DataError(f"{path}: onnxruntime cannot load the graph ({exc})") from None
        return self._sessions[key]

    def run(self, images: np.ndarray, *, student: bool = False) -> np.ndarray:
        """The graph's class probabilities ``float32 (N, C)`` of ``uint8 (N, size, size, channels)`` images.

        Raw: the stored temperature is applied by :func:`ferray.predict.predict`, not here.
        """
        size, channels = self.input_size(student)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != (size, size, channels):
            raise DataError(
                f"images are {images.dtype} {images.shape}, but the graph takes uint8 (N, {size}, {size}, {channels})"
            )
        graph = self.graph(student)
        return self.session(student).run(["probs"], {graph["input"].get("name", "images"): images})[0]

    def __repr__(self) -> str:
        size, channels = self.input_size()
        return (
            f"Bundle({str(self.path)!r}, classes={len(self.classes)}, input={size}x{size}x{channels}, "
            f"method={self.method!r}, members={len(self.members)}, student={self.has_student}, "
            f"temperature={self.temperature():.4g})"
        )
