"""Predict emotions with a bundle: images in, one record per image (or per face) out."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ferray.errors import DataError
from ferray.metrics.calibration import apply_temperature, describe_calibration
from ferray.predict._bundle import Bundle
from ferray.predict._faces import FaceDetector, resolve_detector
from ferray.predict._inputs import collect_inputs, load_crops

__all__ = ["Prediction", "Predictions", "Skipped", "calibration_note", "iter_predictions", "predict"]


@dataclass
class Prediction:
    """The prediction for one image, or one face of a photo.

    Attributes:
        source: the image path (as given), ``file.csv:LINE`` or ``array[i]``.
        label: the most probable class.
        score: its probability.
        probs: every class's probability, in the bundle's class order.
        face: the face's index in the photo (``predict(faces=True)``), else None.
        box: the face's ``(x, y, w, h)`` in the photo's pixels, else None.
    """

    source: str
    label: str
    score: float
    probs: dict[str, float]
    face: int | None = None
    box: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "face": self.face,
            "box": list(self.box) if self.box else None,
            "label": self.label,
            "score": self.score,
            "probs": dict(self.probs),
        }


@dataclass
class Skipped:
    """An input that gave no prediction: unreadable, or (with faces) no face found."""

    source: str
    reason: str

    def to_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


class Predictions(list):
    """A ``list`` of :class:`Prediction` with what was skipped and how the predictions were made.

    Attributes:
        skipped: the :class:`Skipped` inputs, in input order.
        classes: the bundle's classes.
        model: ``"ensemble"`` or ``"student"``.
        tta: whether horizontal-flip test-time augmentation was used.
        bundle: the bundle folder.
        calibrated: whether the bundle's temperature was applied (``calibrated=True``).
        temperature: the temperature applied to the probabilities (1.0: as the graph gave them).
        calibration: one line saying which probabilities these are (see :func:`calibration_note`).
    """

    def __init__(
        self,
        items: Iterable[Prediction] = (),
        *,
        skipped: Sequence[Skipped] = (),
        classes: Sequence[str] = (),
        model: str = "ensemble",
        tta: bool = False,
        bundle: str = "",
        calibrated: bool = False,
        temperature: float = 1.0,
        calibration: str = "",
    ) -> None:
        super().__init__(items)
        self.skipped = list(skipped)
        self.classes = list(classes)
        self.model, self.tta, self.bundle = model, tta, bundle
        self.calibrated, self.temperature, self.calibration = calibrated, float(temperature), calibration

    def probs(self) -> np.ndarray:
        """``(n, n_classes)`` float32 probabilities, one row per prediction."""
        return np.array([[p.probs[c] for c in self.classes] for p in self], dtype=np.float32).reshape(
            len(self), len(self.classes)
        )


class _Progress:
    """tqdm when it is installed (not a predict dependency), else a plain line on stderr."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.enabled, self.total, self.n, self._bar, self._last = enabled, total, 0, None, -1
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="img", file=sys.stderr, desc="predict", dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        pct = int(100 * self.n / self.total) if self.total else self.n
        if pct // 10 != self._last // 10 or self.n == self.total:
            self._last = pct
            print(f"predict: {self.n}/{self.total if self.total else '?'} images", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def calibration_note(bundle: Bundle, *, student: bool = False, calibrated: bool = True) -> str:
    """One line saying which probabilities ``predict(bundle, ..., calibrated=...)`` gives.

    >>> calibration_note(Bundle.load("runs/exp1/bundle"))  # doctest: +SKIP
    'calibrated: softmax(log p / T), T = 1.42 fitted on 1204 out-of-fold rows (ECE 0.081 -> 0.023)'
    """
    if not calibrated:
        return "raw: the graph's probabilities, without the stored temperature"
    cal = bundle.calibration(student)
    note = describe_calibration(cal)
    return f"calibrated: softmax(log p / T), {note}" if cal.get("fitted_on") else note


def iter_predictions(
    bundle: Bundle | str | os.PathLike,
    inputs,
    *,
    student: bool = False,
    tta: bool = False,
    faces: bool | FaceDetector = False,
    batch_size: int = 64,
    progress: bool = True,
    calibrated: bool = True,
) -> Iterator[Prediction | Skipped]:
    """Stream :class:`Prediction` and :class:`Skipped` records (see :func:`predict`)."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size is {batch_size!r}, but must be an integer >= 1")
    if not isinstance(calibrated, bool):
        raise DataError(f"calibrated is {calibrated!r}, but must be True (the bundle's temperature) or False (raw)")
    size, channels = bundle.input_size(student)
    temperature = bundle.temperature(student) if calibrated else 1.0
    classes = bundle.classes
    detector = resolve_detector(faces)
    bundle.session(student)  # fail on a broken graph before reading any image
    total, items = collect_inputs(inputs)
    bar = _Progress(total, progress)
    pending: list[np.ndarray] = []
    meta: list[tuple[str, int | None, tuple | None]] = []

    def flush() -> Iterator[Prediction]:
        batch = np.stack(pending)
        probs = bundle.run(batch, student=student)
        if tta:
            probs = (probs + bundle.run(np.ascontiguousarray(batch[:, :, ::-1]), student=student)) / 2
        if temperature != 1.0:
            probs = apply_temperature(probs, temperature)
        for (source, face, box), row in zip(meta, probs):
            top = int(np.argmax(row))
            yield Prediction(
                source, classes[top], float(row[top]), {c: float(v) for c, v in zip(classes, row)}, face, box
            )
        pending.clear()
        meta.clear()

    try:
        for item in items:
            try:
                for face, box, crop in load_crops(item, size, channels, detector):
                    pending.append(crop)
                    meta.append((item.source, face, box))
            except DataError as exc:
                yield Skipped(item.source, str(exc))
            bar.update()
            if len(pending) >= batch_size:
                yield from flush()
        if pending:
            yield from flush()
    finally:
        bar.close()


def predict(
    bundle: Bundle | str | os.PathLike,
    inputs,
    *,
    student: bool = False,
    tta: bool = False,
    faces: bool | FaceDetector = False,
    batch_size: int = 64,
    progress: bool = True,
    calibrated: bool = True,
) -> Predictions:
    """Class probabilities for images, with a bundle's ensemble (or student).

    Args:
        bundle: a :class:`Bundle` or its folder.
        inputs: an image file; a folder (searched recursively for .jpg/.jpeg/.png/.bmp/.tif/.tiff,
            decoded a batch at a time); a CSV with a ``path`` column (relative to the CSV's
            folder) or a FER2013-style ``pixels`` column; a list of image paths; or a
            ``uint8`` array ``(N, H, W[, C])``. Images are converted to the bundle's channels
            and resized to its input size.
        student: use ``student.onnx`` instead of the ensemble.
        tta: average the probabilities of each image and its mirror image.
        faces: ``True`` finds faces on whole photos with OpenCV's Haar cascade (one
            prediction per face, with its box); a callable is used as the detector; ``False``
            takes every image as a face crop.
        batch_size: images per onnxruntime call.
        progress: show a progress bar on stderr.
        calibrated: apply the bundle's stored temperature, ``softmax(log p / T)`` (after
            ``tta``'s mean); a bundle without one has ``T = 1``. ``False`` gives the graph's
            raw probabilities. The argmax is the same either way.

    Returns:
        :class:`Predictions`: one :class:`Prediction` per image (per face), and
        ``.skipped`` listing unreadable images (and photos without a face);
        ``.calibrated``, ``.temperature`` and ``.calibration`` say which probabilities they are.

    Raises:
        DataError: a bad bundle or input path, no student in the bundle, no face detector.

    >>> preds = predict("runs/exp1/bundle", "photos/", tta=True)  # doctest: +SKIP
    >>> preds[0].label, preds[0].score  # doctest: +SKIP
    ('happy', 0.93)
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    scaled = calibrated is True  # anything else is refused by iter_predictions
    out = Predictions(
        classes=bundle.classes,
        model="student" if student else "ensemble",
        tta=tta,
        bundle=str(bundle.path),
        calibrated=scaled,
        temperature=bundle.temperature(student) if scaled else 1.0,
        calibration=calibration_note(bundle, student=student, calibrated=scaled),
    )
    for record in iter_predictions(
        bundle,
        inputs,
        student=student,
        tta=tta,
        faces=faces,
        batch_size=batch_size,
        progress=progress,
        calibrated=calibrated,
    ):
        (out.skipped if isinstance(record, Skipped) else out).append(record)
    return out
