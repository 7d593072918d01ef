"""Find faces on whole photos with OpenCV's bundled Haar cascade (``predict(faces=True)``).

FER models are trained on face crops; on a photo, each face the detector finds is cropped
and predicted on its own, with its box. Any callable ``gray uint8 (H, W) -> [(x, y, w, h),
...]`` can replace the detector.

OpenCV 5 moved ``CascadeClassifier`` and its cascade files out of ``opencv-python`` (to
``opencv-contrib``'s ``xobjdetect``, and its 5.0 wheels ship no cascade files), so the
detector needs ``opencv-python-headless>=4.8,<5`` or a cascade file given explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ferray.errors import DataError

__all__ = ["FaceDetector", "HaarFaceDetector", "resolve_detector"]

#: ``gray uint8 (H, W)`` -> boxes ``(x, y, w, h)`` in that image's pixels.
FaceDetector = Callable[[np.ndarray], list[tuple[int, int, int, int]]]

_CASCADE = "haarcascade_frontalface_default.xml"
_INSTALL = "pip install 'opencv-python-headless>=4.8,<5'"


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade.

    Args:
        cascade: a cascade XML file; default ``cv2.data.haarcascades +
            "haarcascade_frontalface_default.xml"``.
        scale_factor, min_neighbors: ``detectMultiScale``'s settings (OpenCV's usual 1.1, 5).
        min_size: the smallest face side searched, in pixels of the (possibly downscaled) photo.
        max_side: photos larger than this are downscaled for detection (boxes are mapped back).

    Raises:
        DataError: OpenCV is missing, has no ``CascadeClassifier`` (OpenCV 5), or the cascade
            file is missing; the message says what to install.
    """

    def __init__(
        self,
        cascade: str | os.PathLike | None = None,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 30,
        max_side: int = 1600,
    ) -> None:
        try:
            import cv2
        except ImportError:
            raise DataError(f"--faces needs OpenCV: {_INSTALL} (or pip install 'ferray[predict]')") from None
        if not hasattr(cv2, "CascadeClassifier"):
            raise DataError(
                f"--faces needs OpenCV's Haar cascade detector (cv2.CascadeClassifier), which OpenCV "
                f"{cv2.__version__} does not have (OpenCV 5 moved it out of opencv-python): {_INSTALL}"
            )
        if cascade is None:
            base = getattr(getattr(cv2, "data", None), "haarcascades", "")
            cascade = os.path.join(base, _CASCADE)
        cascade = str(cascade)
        if not os.path.isfile(cascade):
            raise DataError(
                f"{cascade}: Haar cascade file not found (OpenCV {cv2.__version__}'s wheel ships none); {_INSTALL}"
            )
        self._cv2 = cv2
        self._classifier = cv2.CascadeClassifier(cascade)
        if self._classifier.empty():
            raise DataError(f"{cascade}: OpenCV cannot read this Haar cascade file")
        self.cascade = cascade
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self.min_size, self.max_side = int(min_size), int(max_side)

    def __call__(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        cv2 = self._cv2
        h, w = gray.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = (
            cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            if scale < 1.0
            else gray
        )
        small = cv2.equalizeHist(np.ascontiguousarray(small))
        found = self._classifier.detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        boxes = [tuple(round(float(v) / scale) for v in box) for box in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: (b[1] // max(1, b[3]), b[0]))  # rows of faces, left to right

    def __repr__(self) -> str:
        return f"HaarFaceDetector({os.path.basename(self.cascade)!r})"


def resolve_detector(faces: bool | FaceDetector | None) -> FaceDetector | None:
    """The detector ``faces`` asks for: None (every image is a face crop), the Haar cascade, or the callable.

    Raises:
        DataError: ``faces`` is none of these, or the Haar cascade cannot be loaded.
    """
    if faces is False or faces is None:
        return None
    if faces is True:
        return HaarFaceDetector()
    if callable(faces):
        return faces
    raise DataError(f"faces is {faces!r}; expected True, False or a detector gray -> [(x, y, w, h)]")
