"""Real FER2013 faces from the shared data (the ``shared_data`` fixture's root)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def fer_faces(root: Path, n: int, emotion: str = "happy") -> list[Image.Image]:
    """The first ``n`` FER2013 test faces of ``emotion`` (48x48 grayscale), in file-name order."""
    files = sorted((root / "fer2013" / "test" / emotion).glob("*.jpg"))[:n]
    if len(files) < n:
        raise FileNotFoundError(f"{root / 'fer2013' / 'test' / emotion}: {len(files)} faces, the test needs {n}")
    return [Image.open(f).convert("L") for f in files]
