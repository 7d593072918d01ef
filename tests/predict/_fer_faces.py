"""Real FER2013 faces from ``../shared/datasets`` (or ``$FERRAY_SHARED_DATA``), when present."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

_REPO = Path(__file__).resolve().parents[2]


def fer_faces(n: int) -> list[Image.Image]:
    root = Path(os.environ.get("FERRAY_SHARED_DATA") or _REPO.parent / "shared" / "datasets") / "fer2013" / "test"
    files = sorted((root / "happy").glob("*.jpg"))[:n] if (root / "happy").is_dir() else []
    return [Image.open(f).convert("L") for f in files]
