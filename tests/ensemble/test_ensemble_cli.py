from __future__ import annotations

import argparse
import json

import pytest

from ferray.cli import command_table
from ferray.ensemble._cli import add_commands
from ferray.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def test_arguments_parse():
    args = _parser().parse_args(
        [
            "ensemble",
            "runs/x",
            "--top",
            "3",
            "--method",
            "greedy",
            "--method",
            "stacking,vote",
            "--include-pruned",
            "--json",
            "--seed",
            "2",
        ]
    )
    assert (args.run, args.top, args.method, args.include_pruned, args.json, args.seed) == (
        "runs/x",
        3,
        ["greedy", "stacking,vote"],
        True,
        True,
        2,
    )
    assert args.func is command_table(_parser())["ensemble"]
    defaults = _parser().parse_args(["ensemble", "runs/x"])
    assert defaults.top is None and defaults.method is None and not defaults.include_pruned


def test_json_output_and_progress_on_stderr(make_run, capsys):
    run = make_run()
    assert _run(["ensemble", str(run.root), "--top", "2", "--method", "mean,vote", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["methods"] == ["mean", "vote"] and data["members"] == ["t_a", "t_b"]
    assert data["chosen"] in ("mean", "vote") and "chosen:" in err
    assert (run.root / "ensemble" / "ensemble.json").is_file()


def test_table_output(make_run, capsys):
    assert _run(["ensemble", str(make_run().root), "--method", "all"]) == 0
    out = capsys.readouterr().out
    for word in ("greedy", "stacking", "mean", "vote", "chosen:"):
        assert word in out


def test_bad_input_raises_the_error_the_cli_turns_into_exit_2(make_run):
    run = make_run()
    with pytest.raises(ConfigError, match=r"unknown ensemble method 'best'"):
        _run(["ensemble", str(run.root), "--method", "best"])
    with pytest.raises(ConfigError, match=r"asks for 40 members"):
        _run(["ensemble", str(run.root), "--top", "40"])


def test_pool_option_reaches_greedy_selection(make_run, capsys):
    from .test_pool import _mark_weights, pool_trials

    run = make_run(pool_trials())
    _mark_weights(run)
    assert _parser().parse_args(["ensemble", "runs/x"]).pool is None  # default: ensemble.greedy.pool
    for pool, expected in (("top_k", ["t_a", "t_b"]), ("3", ["t_a", "t_b", "t_c"])):
        assert _run(["ensemble", str(run.root), "--top", "2", "--method", "greedy", "--pool", pool, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["top_members"] == ["t_a", "t_b"] and data["pool"] == expected
    with pytest.raises(ConfigError, match=r"greedy pool is 'every', but must be 'all'"):
        _run(["ensemble", str(run.root), "--pool", "every"])


def test_max_latency_ms_option_reaches_the_selection(make_run, capsys):
    from .test_latency_budget import timed_trials

    run = make_run(timed_trials())
    assert _parser().parse_args(["ensemble", "runs/x"]).max_latency_ms is None
    argv = ["ensemble", str(run.root), "--top", "4", "--method", "mean", "--max-latency-ms", "5", "--json"]
    assert _run(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["members"] == ["t_a", "t_c"]
    assert data["max_latency_ms"] == 5.0 and data["latency_ms"] == pytest.approx(4.5)
