"""Every package ``__init__`` follows ``ferray._lazy``'s one export rule, and its three lists agree.

The rule: an ``_EXPORTS`` dict literal (name -> defining module), ``__all__ = list(_EXPORTS)``,
``lazy_exports`` and an ``if TYPE_CHECKING:`` block importing the same names from the same
modules. Read with :mod:`ast`, so the check imports nothing heavy.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ferray

PACKAGE = Path(ferray.__file__).parent
INITS = sorted(p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)


def _name(path: Path) -> str:
    return ".".join(path.parent.relative_to(PACKAGE.parent).parts)


def _assigned(tree: ast.Module, target: str) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == target for t in node.targets):
            return node.value
    return None


def _type_checking_imports(tree: ast.Module) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                found.update({alias.name: stmt.module for alias in stmt.names})
    return found


def _top_level_names(module: str) -> set[str]:
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@pytest.mark.parametrize("path", INITS, ids=_name)
def test_exports_all_and_type_checking_block_agree(path):
    tree = ast.parse(path.read_text())
    exports_node = _assigned(tree, "_EXPORTS")
    assert exports_node is not None, f"{path}: no _EXPORTS mapping"
    exports = ast.literal_eval(exports_node)
    assert ast.unparse(_assigned(tree, "__all__")) == "list(_EXPORTS)", f"{path}: __all__ is not list(_EXPORTS)"
    assert "lazy_exports(__name__, _EXPORTS" in path.read_text()
    assert _type_checking_imports(tree) == exports, f"{path}: the TYPE_CHECKING imports differ from _EXPORTS"
    # No other module-level import of ferray code: nothing loads until a name is used.
    eager = [
        n.module
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("ferray") and n.module != "ferray._lazy"
    ]
    assert eager == [], f"{path}: eager imports {eager}"


@pytest.mark.parametrize("path", INITS, ids=_name)
def test_each_module_defines_its_exported_names(path):
    exports = ast.literal_eval(_assigned(ast.parse(path.read_text()), "_EXPORTS"))
    for name, module in exports.items():
        assert name in _top_level_names(module), f"{_name(path)}.{name}: not defined in {module}"


@pytest.mark.parametrize("package", ["ferray.metrics", "ferray.imaging", "ferray.run", "ferray.predict"])
def test_light_packages_resolve_every_name(package):
    module = importlib.import_module(package)
    assert set(dir(module)) >= set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    import ferray.metrics

    with pytest.raises(AttributeError, match="module 'ferray.metrics' has no attribute 'acuracy'"):
        ferray.metrics.acuracy  # noqa: B018
