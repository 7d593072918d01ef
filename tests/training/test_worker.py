"""The fold worker's epoch log (``epochs.jsonl``), written without Ray."""

from __future__ import annotations

import json
import logging

from ferray.run.layout import TrialLayout
from ferray.training._worker import _EpochLog

_LOGGER = "ferray.training._worker"


def test_each_epoch_appends_one_line(tmp_path):
    log = _EpochLog(str(tmp_path))
    assert log.append(1, 2.5) and log.append(2, 1.25)
    rows = [json.loads(line) for line in TrialLayout(tmp_path).epochs.read_text().splitlines()]
    assert [(r["epoch"], r["seconds"]) for r in rows] == [(1, 2.5), (2, 1.25)]


def test_no_output_dir_writes_nothing(caplog):
    with caplog.at_level(logging.DEBUG, logger=_LOGGER):
        assert _EpochLog(None).append(1, 1.0)
    assert not caplog.records


def test_a_failed_append_is_warned_once_per_worker_naming_file_and_error(tmp_path, caplog):
    path = TrialLayout(tmp_path).epochs
    path.mkdir()  # a folder where the log should be: every append fails
    log = _EpochLog(str(tmp_path))
    with caplog.at_level(logging.DEBUG, logger=_LOGGER):
        assert [log.append(epoch, 1.0) for epoch in (1, 2, 3)] == [False, False, False]  # the trial goes on
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert message.startswith(f"could not append epoch 1 to {path}: ")
    assert "Is a directory" in message and "further failures of this worker are logged at debug level" in message
    later = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [m.split(":")[0] for m in later] == [f"could not append epoch {e} to {path}" for e in (2, 3)]
