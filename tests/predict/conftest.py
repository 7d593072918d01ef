from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# The bundle fixture is shared with tests/export (built once per session).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from _export_helpers import shared_bundle


@pytest.fixture(scope="session")
def greedy_bundle(tmp_path_factory) -> dict:
    """The shared greedy bundle (2 members, a student); read-only."""
    return shared_bundle(tmp_path_factory)


@pytest.fixture
def bundle_copy(tmp_path, greedy_bundle) -> Path:
    """A private copy of the shared bundle, for tests that damage it."""
    dst = tmp_path / "bundle"
    shutil.copytree(greedy_bundle["bundle"], dst)
    return dst


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory) -> dict:
    """A bundle exported from a run whose ensemble has out-of-fold rows: its temperature is fitted; read-only."""
    from _export_helpers import calibrated_run

    return calibrated_run(tmp_path_factory)
