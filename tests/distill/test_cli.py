"""``ferray distill`` argument parsing (not yet wired into ferray/cli.py: tested on its own parser)."""

import argparse

import pytest

from ferray.distill._cli import COMMANDS, add_parser
from ferray.errors import ConfigError


def _parser():
    parser = argparse.ArgumentParser(prog="ferray")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_arguments_reach_the_library_call(monkeypatch):
    seen = {}

    def fake(run, **kwargs):
        seen.update(run=run, **kwargs)
        raise ConfigError("stop here")

    monkeypatch.setattr("ferray.distill.distill_run", fake)
    args = _parser().parse_args(["distill", "runs/x", "--student", "test_resnet", "--epochs", "2",
                                 "--num-cpus", "2", "--alpha", "0.5"])
    assert args.func is COMMANDS["distill"]
    with pytest.raises(ConfigError, match="stop here"):
        args.func(args)
    assert seen["run"] == "runs/x" and seen["student"] == "test_resnet" and seen["epochs"] == 2
    assert seen["num_cpus"] == 2 and seen["alpha"] == 0.5 and seen["temperature"] is None


def test_bad_run_is_a_ferray_error(tmp_path):
    args = _parser().parse_args(["distill", str(tmp_path)])
    with pytest.raises(ConfigError, match="not a ferray run directory"):
        args.func(args)


def test_help_names_the_prerequisite(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["distill", "--help"])
    assert "ferray ensemble RUN" in capsys.readouterr().out
