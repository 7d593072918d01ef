"""Fixtures of the data tests: a symlinked part of the real FER2013 folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fer2013_subset(shared_data, tmp_path_factory) -> Path:
    """FER2013's ``disgust`` and ``surprise`` folders, train and test (4,549 real images,
    the class folders symlinked): hundreds of their test images have an exact or near copy in train."""
    root = tmp_path_factory.mktemp("fer2013_subset")
    src = shared_data / "fer2013"
    for split in ("train", "test"):
        (root / split).mkdir()
        for cls in ("disgust", "surprise"):
            os.symlink(src / split / cls, root / split / cls, target_is_directory=True)
    return root
