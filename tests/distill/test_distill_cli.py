"""``ferray distill``: its sub-parser hands every argument to ``distill_run``, and ``ferray``'s CLI wires it in
(bad input exits 2 with the error on stderr; ``--help`` names the prerequisite)."""

import argparse

import pytest

from ferray.cli import command_table, main
from ferray.distill._cli import add_commands
from ferray.errors import ConfigError


def _parser():
    """``distill``'s sub-parser alone, under a bare ``ferray`` parser."""
    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_arguments_reach_the_library_call(monkeypatch):
    """Each flag reaches ``distill_run`` under its keyword; a flag not given stays None (the spec's value)."""
    seen = {}

    def fake(run, **kwargs):
        seen.update(run=run, **kwargs)
        raise ConfigError("stop here")

    monkeypatch.setattr("ferray.distill.distill_run", fake)
    args = _parser().parse_args(
        ["distill", "runs/x", "--student", "test_resnet", "--epochs", "2", "--num-cpus", "2", "--alpha", "0.5"]
    )
    assert args.func is command_table(_parser())["distill"]
    with pytest.raises(ConfigError, match="stop here"):
        args.func(args)
    assert seen["run"] == "runs/x" and seen["student"] == "test_resnet" and seen["epochs"] == 2
    assert seen["num_cpus"] == 2 and seen["alpha"] == 0.5 and seen["temperature"] is None
    assert seen["teacher"] is None and seen["max_latency_ms"] is None


def test_candidates_teacher_and_latency_cap_reach_the_library_call(monkeypatch):
    """``--student`` repeated or as a comma list gives the candidates in order."""
    seen = {}

    def fake(run, **kwargs):
        seen.update(kwargs)
        raise ConfigError("stop here")

    monkeypatch.setattr("ferray.distill.distill_run", fake)
    args = _parser().parse_args(
        [
            "distill",
            "runs/x",
            "--student",
            "test_resnet,resnet10t",
            "--student",
            "mobilenetv3_small_050",
            "--teacher",
            "fixed",
            "--max-latency-ms",
            "2.5",
        ]
    )
    with pytest.raises(ConfigError, match="stop here"):
        args.func(args)
    assert seen["student"] == ["test_resnet", "resnet10t", "mobilenetv3_small_050"]
    assert seen["teacher"] == "fixed" and seen["max_latency_ms"] == 2.5
    with pytest.raises(SystemExit):
        _parser().parse_args(["distill", "runs/x", "--teacher", "live"])


def test_bad_run_is_a_ferray_error(tmp_path, capsys):
    """Not a run: the handler raises ConfigError, which ``ferray distill`` (ferray.cli.main) turns into exit 2."""
    args = _parser().parse_args(["distill", str(tmp_path)])
    with pytest.raises(ConfigError, match="not a ferray run directory"):
        args.func(args)
    assert main(["distill", str(tmp_path)]) == 2
    assert "not a ferray run directory" in capsys.readouterr().err


def test_help_names_the_prerequisite(capsys):
    """``ferray distill --help`` says to run ``ferray ensemble RUN`` first."""
    with pytest.raises(SystemExit):
        _parser().parse_args(["distill", "--help"])
    assert "ferray ensemble RUN" in capsys.readouterr().out
