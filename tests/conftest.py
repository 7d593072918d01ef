"""Shared fixtures: the real FER data in ``../shared/datasets`` (or ``$FERRAY_SHARED_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """Where the real FER data lives, or ``None`` when it is absent."""
    root = Path(os.environ.get("FERRAY_SHARED_DATA") or _REPO.parent / "shared" / "datasets")
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real FER data; skips the test when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("real FER data not found: set FERRAY_SHARED_DATA or place it at ../shared/datasets")
    return root
