"""Code blocks of the README and of the documentation pages, and the checks they share.

A ```` ```bash ```` block holds commands as a reader types them; a ```` ```console ```` block
holds ``$ command`` lines and their output; ```` ```text ```` blocks hold synopses and output,
which are not run. Every ``ferray`` command must parse; the cheap ones (:data:`CHEAP`) run.
A ```` ```python ```` block must compile, what it imports from ferray must exist, and its calls
of ferray functions must fit their signatures.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: Commands run as written (seconds each): the rest train, and the end-to-end tests run them on a tiny spec.
CHEAP = (
    "ferray data grid",
    "ferray data check",
    "ferray data folds",
    "ferray data prepare",
    "ferray doctor",
    "--dry-run",
)


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}[^\n]*\n(.*?)^```", text, re.S | re.M)


def bash_lines(text: str) -> list[str]:
    """Command lines of the ```bash blocks (continuations joined, comments dropped) and the
    ``$`` lines of the ```console blocks."""
    lines = []
    for block in code_blocks(text, "bash"):
        block = block.replace("\\\n", " ")  # continuation lines
        for line in block.splitlines():
            line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    for block in code_blocks(text, "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                lines.append(re.split(r"\s+#\s", line[2:], maxsplit=1)[0].strip())
    return lines


def ferray_commands(text: str) -> list[str]:
    out = []
    for line in bash_lines(text):
        for part in re.split(r"&&|\|(?![^\"]*\"\s*$)", line):
            part = part.strip()
            if part.startswith("ferray"):
                out.append(part)
    return out


def synopsis_in(line: str) -> bool:
    """Whether a command line is a synopsis (``[--flag]``, ``RUN``, ``BUNDLE``...): those go in ```text."""
    return bool(re.search(r"\[--|\bRUN\b|\bBUNDLE\b|\bSPEC\b|\bSOURCE\b", line))


def check_parses(command: str) -> str | None:
    """``None`` when ``command`` parses as ``ferray`` parses it, else why not."""
    from ferray.cli import _build_parser

    argv = shlex.split(command)[1:]
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:
        return f"{command!r} does not parse (exit {exc.code})"
    if getattr(args, "func", None) is None:
        return f"{command!r} names no command"
    return None


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


def clone_like(tmp_path: Path) -> tuple[Path, Path | None]:
    """A folder laid out like a clone (the repository's specs and clusters, an empty ``docs/assets``), with
    ``../shared/datasets`` beside it when the real data is here; ``(clone, shared data)``."""
    from tests.conftest import shared_data_root

    work = tmp_path / "clone"
    work.mkdir()
    for name in ("search_spaces", "clusters"):
        (work / name).symlink_to(REPO / name)
    (work / "docs" / "assets").mkdir(parents=True)
    shared = shared_data_root()
    if shared is not None:
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "datasets").symlink_to(shared)
    return work, shared


def run_cheap(commands: list[str], tmp_path: Path) -> tuple[list[str], Path]:
    """Run the cheap commands whose inputs exist in a clone-like folder; ``(those run, the folder)``.

    An example on the reader's own data (``data/ck+``, a run of theirs) is left out.
    """
    work, shared = clone_like(tmp_path)
    ran = []
    for command in dict.fromkeys(commands):  # each distinct command once
        if not any(c in command for c in CHEAP):
            continue
        if "../shared" in command and shared is None:
            continue
        if not _inputs_exist(command, work):
            continue
        argv = [sys.executable, "-m", "ferray.cli", *shlex.split(command)[1:]]
        env = {**os.environ, "COLUMNS": "120"}
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=240, env=env)
        # `data check` exits 1 when it finds errors in the data (FER2013 has duplicates across splits).
        ok = (0, 1) if command.startswith("ferray data check") else (0,)
        assert proc.returncode in ok, f"{command!r} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
        ran.append(command)
    return ran, work


def python_problems(block: str) -> list[str]:
    """What is wrong with a ```python block: a syntax error, a ferray name that does not exist,
    a call of a ferray function or class whose arguments do not fit its signature."""
    try:
        tree = ast.parse(block)
    except SyntaxError as exc:
        return [f"syntax error: {exc}"]
    problems, names = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ferray":
            module = importlib.import_module(node.module)
            for alias in node.names:
                try:
                    names[alias.asname or alias.name] = getattr(module, alias.name)
                except AttributeError:
                    problems.append(f"{node.module} has no {alias.name!r}")
    for node in ast.walk(tree):
        if (
            not isinstance(node, ast.Call)
            or any(isinstance(a, ast.Starred) for a in node.args)
            or any(k.arg is None for k in node.keywords)
        ):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names:
            target = names[func.id]
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in names:
            target = getattr(names[func.value.id], func.attr, None)
            if target is None:
                problems.append(f"{func.value.id} has no {func.attr!r}")
                continue
        else:
            continue
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            continue
        try:
            signature.bind(*node.args, **{k.arg: k.value for k in node.keywords})
        except TypeError as exc:
            problems.append(f"{ast.unparse(node)}: {exc}")
    return problems
