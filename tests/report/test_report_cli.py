"""``ferray report``: the parser and its handler (cli.py wires it with ``add_commands``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from _fer_helpers import parse_cli

from ferray.errors import ConfigError


def _parse(argv: list[str]) -> argparse.Namespace:
    from ferray.report import _cli

    return parse_cli(_cli, argv)


def test_report_command(run_copy, tmp_path, capsys):
    args = _parse(["report", str(run_copy), "--top-confused", "2", "--out", str(tmp_path / "r")])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "r" / "index.html")
    assert "report: wrote" in err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert all(len(m["most_confused"]) <= 2 for m in doc["models"].values())


def test_report_json(report_bundle, tmp_path, capsys):
    args = _parse(["report", str(report_bundle), "--out", str(tmp_path / "r"), "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "bundle" and doc["bundle"]["method"] == "greedy"


def test_bad_target_is_a_ferray_error(tmp_path):
    args = _parse(["report", str(tmp_path)])
    with pytest.raises(ConfigError, match="not a ferray run directory"):
        args.func(args)


def test_cli_modules_import_nothing_heavy():
    code = (
        "import sys, ferray.report._cli, ferray.explain._cli; "
        "heavy = [m for m in ('torch', 'timm', 'sklearn', 'matplotlib', 'pyarrow', 'pytorch_grad_cam', 'numpy') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
