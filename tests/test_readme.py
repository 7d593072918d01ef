"""The README's command blocks: every `ferray` command parses as written, and the cheap ones run.

Commands that train (search, resume, ensemble, distill, export, predict on a run) are run by
the end-to-end tests on a tiny spec; here they must at least be valid for the parser.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _bash_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        block = block.replace("\\\n", " ")  # continuation lines
        for line in block.splitlines():
            line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _ferray_commands() -> list[str]:
    out = []
    for line in _bash_lines():
        for part in re.split(r"&&|\|(?![^\"]*\"\s*$)", line):
            part = part.strip()
            if part.startswith("ferray"):
                out.append(part)
    return out


def test_the_readme_opens_with_the_two_commands():
    lines = _bash_lines()
    assert lines[0] == "python3 -m pip install -e . && ferray search"
    assert lines[1] == 'python3 -m pip install -e ".[test]" && python3 -m pytest -q'
    ci = (REPO / ".ci" / "run").read_text()
    assert lines[1] in ci


def test_bash_blocks_hold_no_synopsis_placeholders():
    for line in _bash_lines():
        assert not re.search(r"\[--|\bRUN\b|\bBUNDLE\b|\bSPEC\b|\bSOURCE\b", line), \
            f"{line!r} is a synopsis: put it in a ```text block"


@pytest.mark.parametrize("command", _ferray_commands())
def test_every_readme_command_parses(command):
    from ferray.cli import _build_parser

    argv = shlex.split(command)[1:]
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command {command!r} does not parse (exit {exc.code})")
    assert getattr(args, "func", None) is not None, command


def _inputs_exist(command: str, cwd: Path) -> bool:
    """Whether every path-like argument (but an --out target) exists, relative to ``cwd``."""
    args = shlex.split(command)[1:]
    for i, arg in enumerate(args):
        if i and args[i - 1] == "--out":
            continue
        path = arg.split("?", 1)[0]
        if arg.startswith("synthetic:") or arg.startswith("-") or not ("/" in path or "." in path):
            continue
        if not (cwd / path).exists():
            return False
    return True


CHEAP = ("ferray data grid", "ferray data check", "ferray data folds", "ferray data prepare", "ferray doctor",
         "--dry-run")


@pytest.mark.timeout(300)
def test_the_cheap_readme_commands_run_as_written(tmp_path):
    """Run from a folder laid out like a clone: the repository's files, ../shared beside it."""
    from tests.conftest import shared_data_root

    work = tmp_path / "clone"
    work.mkdir()
    for name in ("search_spaces", "docs"):
        (work / name).symlink_to(REPO / name) if name == "search_spaces" else (work / name).mkdir()
    shared = shared_data_root()
    if shared is not None:
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "datasets").symlink_to(shared)
    ran = []
    for command in _ferray_commands():
        if not any(c in command for c in CHEAP):
            continue
        if "../shared" in command and shared is None:
            continue
        if not _inputs_exist(command, work):
            continue  # an example on the reader's own data (data/ck+, a RUN of theirs)
        argv = [sys.executable, "-m", "ferray.cli", *shlex.split(command)[1:]]
        env = {**os.environ, "COLUMNS": "120"}
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=240, env=env)
        # `data check` exits 1 when it finds errors in the data (FER2013 has duplicates across splits).
        ok = (0, 1) if command.startswith("ferray data check") else (0,)
        assert proc.returncode in ok, f"{command!r} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
        ran.append(command)
    assert any("--dry-run" in c for c in ran) and any(c.startswith("ferray data grid") for c in ran)
    assert (work / "docs" / "synthetic_basic7.png").is_file()
