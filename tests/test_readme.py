"""The README: a front door that opens with the two commands, whose commands parse and run.

Commands that train (search, resume, ensemble, distill, export, predict on a run) are run by
the end-to-end tests on a tiny spec; here they must at least be valid for the parser. The
documentation pages' code blocks are checked the same way in ``tests/test_docs.py``.
"""

from __future__ import annotations

import re

import pytest

from tests._markdown import (
    REPO,
    bash_lines,
    check_parses,
    code_blocks,
    ferray_commands,
    python_problems,
    run_cheap,
    synopsis_in,
)

README = (REPO / "README.md").read_text()


def test_the_readme_opens_with_the_two_commands():
    lines = bash_lines(README)
    assert lines[0] == "python3 -m pip install -e . && ferray search"
    assert lines[1] == (
        'python3 -m pip install -e ".[test]" '
        "&& python3 -m ruff check . && python3 -m ruff format --check . && python3 -m pytest -q"
    )
    ci = (REPO / ".ci" / "run").read_text()
    assert lines[1] in ci


def test_the_readme_is_a_front_door_not_a_manual():
    assert len(README.splitlines()) <= 250, "the manual belongs in docs/"


def test_every_readme_link_and_picture_exists():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/") and t.endswith(".md") for t in local)
    for target in local:
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", README)
    assert pictures, "the README shows what a run produces"
    for picture in pictures:
        size = (REPO / picture).stat().st_size
        assert (REPO / picture).read_bytes()[:4] == b"\x89PNG" and size < 300_000, picture


def test_the_readme_draws_the_stages():
    (diagram,) = code_blocks(README, "mermaid")
    for stage in ("data", "training", "search", "ensemble", "distill", "export", "predict"):
        assert stage in diagram


def test_bash_blocks_hold_no_synopsis_placeholders():
    for line in bash_lines(README):
        assert not synopsis_in(line), f"{line!r} is a synopsis: put it in a ```text block"


@pytest.mark.parametrize("command", ferray_commands(README))
def test_every_readme_command_parses(command):
    problem = check_parses(command)
    assert problem is None, f"README: {problem}"


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=f"block{i}") for i, b in enumerate(code_blocks(README, "python"))]
)
def test_the_readme_python_fits_the_api(block):
    """The five-line example names real functions with arguments they take; running it is a
    sweep, which ``tests/test_pipeline_e2e.py`` runs (``ferray search`` = run_search + finish_run)."""
    assert python_problems(block) == []


@pytest.mark.timeout(300)
def test_the_cheap_readme_commands_run_as_written(tmp_path):
    """Run from a folder laid out like a clone: the repository's files, ../shared beside it."""
    ran, _ = run_cheap(ferray_commands(README), tmp_path)
    assert any("--dry-run" in c for c in ran)
