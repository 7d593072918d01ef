"""``ferray submit | jobs | logs | stop | pull``: parsing, refusals, and the pull command end to end."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import ferray.cluster._cli as cluster_cli
from ferray.cli import command_table
from ferray.cluster import push_run, submit, submit_resume
from ferray.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferray")
    cluster_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_the_cli_module_imports_only_argparse_and_sys_at_the_top():
    tree = ast.parse(Path(cluster_cli.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert names == {"__future__", "argparse", "sys"}


def test_every_command_has_a_handler():
    parser = _parser()
    table = command_table(parser)
    assert set(table) == {"submit", "jobs", "logs", "stop", "pull"}
    for word, handler in table.items():
        argv = {
            "submit": ["submit"],
            "jobs": ["jobs"],
            "logs": ["logs", "j"],
            "stop": ["stop", "j"],
            "pull": ["pull", "file:///x"],
        }[word]
        assert parser.parse_args(argv).func is handler


def test_submit_arguments():
    args = _parser().parse_args(
        [
            "submit",
            "spec.yaml",
            "--address",
            "http://head:8265",
            "--storage",
            "s3://b/f",
            "--name",
            "r1",
            "--wait",
            "--env",
            "WANDB_API_KEY",
            "--env",
            "HF_TOKEN",
        ]
    )
    assert (args.spec, args.address, args.storage, args.name, args.wait) == (
        "spec.yaml",
        "http://head:8265",
        "s3://b/f",
        "r1",
        True,
    )
    assert args.env == ["WANDB_API_KEY", "HF_TOKEN"] and args.resume is None and not args.no_ship_ferray


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["submit", "spec.yaml", "--resume", "s3://b/f/r1"],
            r"--resume RUN continues a sweep from its run folder; give no SPEC with it",
        ),
        (
            ["submit", "--resume", "s3://b/f/r1", "--storage", "s3://c"],
            r"--storage: a resumed sweep keeps its run folder",
        ),
        (["submit", "spec.yaml", "--extend", "3"], r"--extend and --retry-errored go with --resume RUN"),
    ],
)
def test_contradictory_submit_flags_are_refused(argv, message):
    args = _parser().parse_args(argv)
    with pytest.raises(ConfigError, match=message):
        args.func(args)


def test_a_secrets_value_on_the_command_line_is_refused_without_echoing_it(monkeypatch):
    with pytest.raises(ConfigError, match=r"--env WANDB_API_KEY=\.\.\.: give the variable's name only") as info:
        submit(None, "http://127.0.0.1:9", env=["WANDB_API_KEY=abc123secret"])
    assert "abc123secret" not in str(info.value)
    monkeypatch.delenv("FERRAY_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"--env FERRAY_TEST_UNSET: not set in this shell's environment"):
        submit_resume("s3://b/f/r1", "http://127.0.0.1:9", env=["FERRAY_TEST_UNSET"])


def test_a_bad_spec_is_refused_before_anything_is_sent(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nbudget: {trails: 3}\n")
    with pytest.raises(ConfigError, match=r"budget.trails"):
        submit(spec, "http://127.0.0.1:9")  # nothing listens on port 9: the spec is checked first


def test_ferray_pull_copies_a_run_from_storage(tmp_path, capsys):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "ferray_run.json").write_text("{}")
    (run / "spec.yaml").write_text("name: r1\n")
    push_run(run, f"file://{tmp_path / 'store' / 'r1'}")
    args = _parser().parse_args(["pull", f"file://{tmp_path / 'store' / 'r1'}", str(tmp_path / "laptop")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "laptop")
    assert (tmp_path / "laptop" / "spec.yaml").read_text() == "name: r1\n"
