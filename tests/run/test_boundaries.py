"""The run layer sits below every stage: checked on the source with ``ast`` (no module is imported).

* no stage (ensemble, distill, report, explain, export, cluster, the pipeline) imports
  ``ferray.search`` for run concepts (layout, spec sections, results, status, retention live in
  ``ferray.run``); the few that run a sweep or find its packaged specs are listed with a reason;
* ``ferray.run`` imports no stage (nor ``ferray.search``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "ferray"

STAGES = ("ensemble", "distill", "report", "explain", "export", "cluster", "predict")

#: (module, imported name) -> why a stage may take it from ferray.search.
ALLOWED_SEARCH_IMPORTS = {
    ("ferray/cluster/_entrypoint.py", "run_search"): "the cluster job's entry point runs the sweep",
    ("ferray/cluster/_entrypoint.py", "resume_search"): "the cluster job's entry point resumes the sweep",
    ("ferray/cluster/_entrypoint.py", "SearchInterrupted"): "the sweep's Ctrl-C, which the job reports",
    (
        "ferray/cluster/_submit.py",
        "packaged_spec",
    ): "submitting with no spec uploads the quickstart spec ferray.search ships",
}


def _imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every import in ``path`` (``import a.b`` gives ``("a.b", "")``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, alias.name) for alias in node.names]
    return out


def _modules(*parts: str) -> list[Path]:
    files: list[Path] = []
    for part in parts:
        p = ROOT / part
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def _rel(path: Path) -> str:
    return path.relative_to(ROOT.parent).as_posix()


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", _modules(*STAGES, "pipeline.py"), ids=_rel)
def test_stages_take_run_concepts_from_the_run_layer(path: Path):
    wrong = [
        f"{module}.{name}" if name else module
        for module, name in _imports(path)
        if _is(module, "ferray.search") and (_rel(path), name) not in ALLOWED_SEARCH_IMPORTS
    ]
    assert not wrong, f"{_rel(path)} imports {wrong} from ferray.search; run concepts live in ferray.run"


@pytest.mark.parametrize("path", _modules("run"), ids=_rel)
def test_the_run_layer_imports_no_stage(path: Path):
    above = ("ferray.search", "ferray.pipeline", "ferray.cli", *(f"ferray.{s}" for s in STAGES))
    wrong = [module for module, _ in _imports(path) if any(_is(module, s) for s in above)]
    assert not wrong, f"{_rel(path)} imports {wrong}: ferray.run sits below every stage"


def test_the_allowed_exceptions_still_exist():
    # An exception whose import went away is dead weight in the list above.
    for module, name in ALLOWED_SEARCH_IMPORTS:
        assert any(_is(m, "ferray.search") and n == name for m, n in _imports(ROOT.parent / module)), (
            f"{module} no longer imports {name} from ferray.search; drop it from ALLOWED_SEARCH_IMPORTS"
        )
