"""The documentation site: it builds with ``mkdocs build --strict``, and its code blocks hold.

Strict mode turns every warning into an error: a broken link or anchor, a page missing from
the nav, a docstring the API pages cannot render, a snippet file that moved. The pages' code
blocks are checked as the README's are (``tests/_markdown.py``): every ``ferray`` command
parses, the cheap ones run as written, Python names real functions with arguments they take,
and YAML parses.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests._markdown import (
    DOCS,
    REPO,
    bash_lines,
    check_parses,
    code_blocks,
    doc_pages,
    ferray_commands,
    python_problems,
    run_cheap,
    synopsis_in,
)

PAGES = {p.relative_to(DOCS).as_posix(): p.read_text() for p in doc_pages()}


def _blocks(lang: str) -> list:
    return [
        pytest.param(name, block, id=f"{name}-{i}")
        for name, text in PAGES.items()
        for i, block in enumerate(code_blocks(text, lang))
    ]


def _commands() -> list[tuple[str, str]]:
    return [(name, command) for name, text in PAGES.items() for command in ferray_commands(text)]


# About 45 s alone; a loaded 2-CPU machine has taken over 280 s.
@pytest.mark.timeout(600)
def test_the_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    cli = (site / "cli" / "index.html").read_text()
    from ferray.cli import command_table

    for words in command_table():
        assert f"ferray {words}" in cli, f"the CLI reference lacks `ferray {words}`"
    for package, name in [
        ("data", "plan_folds"),
        ("training", "FocalLoss"),
        ("search", "run_search"),
        ("ensemble", "GreedyEnsemble"),
        ("distill", "distill_run"),
        ("export", "export_run"),
        ("predict", "Bundle"),
        ("report", "build_report"),
        ("explain", "CAMExplainer"),
        ("cluster", "submit"),
        ("runtime", "plan_resources"),
    ]:
        page = (site / "api" / package / "index.html").read_text()
        assert f'id="ferray.{package}.{name}"' in page or f'id="ferray.{package}._' in page and name in page, (
            f"the API page of ferray.{package} lacks {name}"
        )


def test_the_pages_open_with_the_two_commands():
    lines = bash_lines(PAGES["index.md"])
    readme = bash_lines((REPO / "README.md").read_text())
    assert lines[:2] == readme[:2]


def test_bash_blocks_hold_no_synopsis_placeholders():
    for name, text in PAGES.items():
        for line in bash_lines(text):
            assert not synopsis_in(line), f"docs/{name}: {line!r} is a synopsis: put it in a ```text block"


@pytest.mark.parametrize(("page", "command"), _commands())
def test_every_docs_command_parses(page, command):
    problem = check_parses(command)
    assert problem is None, f"docs/{page}: {problem}"


@pytest.mark.parametrize(("page", "block"), _blocks("python"))
def test_docs_python_fits_the_api(page, block):
    assert python_problems(block) == [], f"docs/{page}"


@pytest.mark.parametrize(("page", "block"), _blocks("yaml"))
def test_docs_yaml_parses(page, block):
    if "--8<--" in block:  # a snippet: the file itself, included at build time
        return
    assert isinstance(yaml.safe_load(block), dict), f"docs/{page}"


@pytest.mark.timeout(600)
def test_the_cheap_docs_commands_run_as_written(tmp_path):
    """Run from a folder laid out like a clone: the repository's files, ../shared beside it."""
    ran, work = run_cheap([c for _, c in _commands()], tmp_path)
    assert any("--dry-run" in c for c in ran) and any(c.startswith("ferray data grid") for c in ran)
    assert (work / "docs" / "assets" / "synthetic_basic7.png").is_file()
