"""Export an ensemble (and a distilled student) as a self-contained, torch-free bundle.

A bundle is a folder that :mod:`ferray.predict` reads with onnxruntime, numpy and Pillow
only (``pip install ferray[predict]``)::

    bundle/
      manifest.json                        format, classes, input, members, method, versions, sha256
      ensemble.onnx                        images uint8 (N, H, W, C) -> probs (N, C), member_probs (N, M, C)
      student.onnx                         images -> probs, when a student was given
      weights/<member>/fold_<i>.safetensors  the members' weights; the graphs read theirs from these files

>>> from ferray.export import export_run
>>> export_run("runs/exp1")  # doctest: +SKIP
PosixPath('runs/exp1/bundle')
"""

# Exports load on first use: `ferray --help` imports this package's CLI module and must not
# pay for torch.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "export_bundle": "ferray.export._bundle",
    "COMBINERS": "ferray.export._graph",
    "EnsembleGraph": "ferray.export._graph",
    "ModelGraph": "ferray.export._graph",
    "build_combiner": "ferray.export._graph",
    "Member": "ferray.export._members",
    "ExportError": "ferray.export._onnx",
    "export_run": "ferray.export._run",
    "fit_calibration": "ferray.export._calibrate",
    "no_calibration": "ferray.export._calibrate",
    "read_ensemble_summary": "ferray.export._run",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.export._bundle import export_bundle
    from ferray.export._calibrate import fit_calibration, no_calibration
    from ferray.export._graph import COMBINERS, EnsembleGraph, ModelGraph, build_combiner
    from ferray.export._members import Member
    from ferray.export._onnx import ExportError
    from ferray.export._run import export_run, read_ensemble_summary
