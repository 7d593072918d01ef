"""The run layout: names, trial discovery, run-name checks, atomic writes."""

from __future__ import annotations

import os

import pytest

from ferray._io import append_line, atomic_write, atomic_write_json
from ferray.errors import ConfigError
from ferray.run.layout import RunLayout, TrialLayout, check_run_name


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", ".", "", "-x", "a..b", "/abs"])
def test_a_run_name_with_separators_or_dots_is_refused(name):
    with pytest.raises(ConfigError, match="a run name is one folder name"):
        check_run_name(name)


def test_a_plain_run_name_is_kept():
    assert check_run_name("exp_1.v2-final") == "exp_1.v2-final"


def test_trials_lists_trial_folders_but_not_stage_or_hidden_folders(tmp_path):
    run = RunLayout(tmp_path)
    for trial in ("3f2a_00000", "3f2a_00001"):
        (tmp_path / trial).mkdir()
        (tmp_path / trial / TrialLayout.CONFIG).write_text("{}")
    for stage in (RunLayout.ENSEMBLE, RunLayout.DISTILL, RunLayout.BUNDLE, ".distill.tmp-1234"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / TrialLayout.CONFIG).write_text("{}")
        (tmp_path / stage / TrialLayout.OOF).write_text("")
    assert [t.trial_id for t in run.trials()] == ["3f2a_00000", "3f2a_00001"]
    assert run.trial("3f2a_00001").weights(2) == tmp_path / "3f2a_00001" / "weights" / "fold_2.safetensors"


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "f.json"
    atomic_write_json(target, {"a": 1})
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"

    def fail(stream):
        stream.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["f.json"]


def test_append_line_appends_whole_lines(tmp_path):
    log = tmp_path / "epochs.jsonl"
    append_line(log, '{"epoch": 1}')
    append_line(log, '{"epoch": 2}\n')
    assert log.read_text().splitlines() == ['{"epoch": 1}', '{"epoch": 2}']
