from __future__ import annotations

import pytest
from _export_helpers import shared_bundle


@pytest.fixture(scope="session")
def greedy_bundle(tmp_path_factory) -> dict:
    """The shared greedy bundle (see ``_export_helpers.shared_bundle``); read-only."""
    return shared_bundle(tmp_path_factory)


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory) -> dict:
    """A run with the chosen ensemble's out-of-fold rows, exported (see ``_export_helpers.calibrated_run``)."""
    from _export_helpers import calibrated_run

    return calibrated_run(tmp_path_factory)
