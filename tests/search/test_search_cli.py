from __future__ import annotations

import argparse
import json

import pytest

from ferray.run.results import ResultsTable
from ferray.search._cli import add_commands


def _parser():
    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_search_arguments_parse():
    args = _parser().parse_args(
        ["search", "spec.yaml", "--dry-run", "--storage", "s3://b/runs", "--name", "x", "--num-cpus", "2"]
    )
    assert args.spec == "spec.yaml" and args.dry_run and args.storage == "s3://b/runs" and args.num_cpus == 2
    assert _parser().parse_args(["search"]).spec is None  # the packaged quickstart


def test_the_after_sweep_hook_rides_on_the_parsed_arguments():
    def hook(result, args):
        return 0

    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"), after_sweep=hook)
    assert parser.parse_args(["search"]).after_sweep is hook
    assert parser.parse_args(["resume", "runs/x", "--no-finish"]).after_sweep is hook
    assert _parser().parse_args(["search"]).after_sweep is None  # no hook: the sweep alone


def test_status_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    t = ResultsTable()
    t.add_result("a", {"optim.lr": 0.01}, {"epoch": 1, "metric": 0.4, "final": True})
    t.set_state("a", "COMPLETED")
    t.add_trial("b", {"optim.lr": 9.0})
    t.set_state("b", "ERROR", error="TrainingFailed: loss became NaN")
    t.write(tmp_path / "results.parquet")
    args = _parser().parse_args(["status", str(tmp_path), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"]["params"] == {"optim.lr": 0.01} and out["counts"] == {"COMPLETED": 1, "ERROR": 1}
    args = _parser().parse_args(["status", str(tmp_path)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "loss became NaN" in text and "best: trial a" in text


def test_status_json_piped_from_the_console_script_exits_cleanly(tmp_path):
    """The installed ``ferray`` in its own process, output piped as ``| jq`` would read it."""
    import shutil
    import subprocess

    t = ResultsTable()
    for i in range(6):
        t.add_result(f"t{i}", {"optim.lr": 0.01 * (i + 1)}, {"epoch": 1, "metric": 0.1 * i, "final": True})
        t.set_state(f"t{i}", "COMPLETED")
    t.write(tmp_path / "results.parquet")
    exe = shutil.which("ferray")
    if exe is None:
        pytest.skip("the ferray console script is not installed (pip install -e .)")
    for _ in range(3):  # the exit-time abort this guards against was timing-dependent
        proc = subprocess.run([exe, "status", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["best"]["trial_id"] == "t5"


def test_search_of_a_bad_spec_raises_config_error(tmp_path):
    from ferray.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace:\n  optim.lr: {type: float, low: 1, high: 0.1}\n")
    args = _parser().parse_args(["search", str(bad), "--dry-run"])
    with pytest.raises(ConfigError, match=r"bad.yaml:3: space\.optim\.lr"):
        args.func(args)
