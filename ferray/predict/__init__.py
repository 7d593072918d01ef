"""Predict with an exported bundle: onnxruntime, numpy and Pillow only (no torch, no Ray).

``pip install ferray[predict]`` is enough to run a bundle written by :mod:`ferray.export`::

    >>> from ferray.predict import Bundle, predict, write_predictions
    >>> bundle = Bundle.load("runs/exp1/bundle")            # doctest: +SKIP
    >>> preds = predict(bundle, "photos/", faces=True)       # doctest: +SKIP
    >>> preds.calibration                                     # doctest: +SKIP
    'calibrated: softmax(log p / T), T = 1.42 fitted on 1204 out-of-fold rows (ECE 0.081 -> 0.023)'
    >>> write_predictions(preds, "predictions.csv")         # doctest: +SKIP

This package imports nothing from torch, Ray, timm or ``ferray.training``/``ferray.search``;
OpenCV is imported only for ``faces=True``. Images decode through :mod:`ferray.imaging` and
the temperature applies through :func:`ferray.metrics.apply_temperature`, both numpy and
Pillow only.
"""

from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "Bundle": "ferray.predict._bundle",
    "FaceDetector": "ferray.predict._faces",
    "HaarFaceDetector": "ferray.predict._faces",
    "Prediction": "ferray.predict._predict",
    "Predictions": "ferray.predict._predict",
    "Skipped": "ferray.predict._predict",
    "calibration_note": "ferray.predict._predict",
    "format_table": "ferray.predict._writers",
    "iter_predictions": "ferray.predict._predict",
    "predict": "ferray.predict._predict",
    "write_csv": "ferray.predict._writers",
    "write_json": "ferray.predict._writers",
    "write_predictions": "ferray.predict._writers",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.predict._bundle import Bundle
    from ferray.predict._faces import FaceDetector, HaarFaceDetector
    from ferray.predict._predict import Prediction, Predictions, Skipped, calibration_note, iter_predictions, predict
    from ferray.predict._writers import format_table, write_csv, write_json, write_predictions
