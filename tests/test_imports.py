"""ferray's import graph has no cycle, and its light entry points load no heavy dependency.

The graph is read from the source with :mod:`ast`: every import, at module level or inside a
function (``if TYPE_CHECKING:`` blocks excepted, they never run), relative imports resolved,
and a package's lazy ``_EXPORTS`` mapping counted as the package importing each module it
names. A name imported from such a package is an edge to the module that defines it. The
one cycle allowed is a package and its own submodules (a submodule that imports its
package's ``__init__``), so those edges are left out.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ferray

PACKAGE = Path(ferray.__file__).parent
ROOT = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id in ("TYPE_CHECKING", "_TYPE_CHECKING")) or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement that can run: module level and function-local, not TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            else:
                stack.append(child)


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def import_graph() -> dict[str, set[str]]:
    """``module -> the ferray modules it imports`` for every module of the installed ferray."""
    paths = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in paths.items()}
    exports = {name: _lazy_exports(tree) for name, tree in trees.items() if paths[name].name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        is_package = paths[name].name == "__init__.py"
        targets = set(exports.get(name, {}).values())
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                if f"{base}.{alias.name}" in paths:
                    targets.add(f"{base}.{alias.name}")
                else:
                    targets.add(exports.get(base, {}).get(alias.name, base))
        # A submodule importing its own package (or an ancestor) is the allowed cycle.
        graph[name] = {t for t in targets if t in paths and t != name and not name.startswith(t + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graph is a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:
        start = min(component)
        path, seen = [start], {start}
        while True:  # walk inside the component until a module repeats
            nxt = min(w for w in graph[path[-1]] if w in component)
            if nxt in seen:
                cycles.append([*path[path.index(nxt) :], nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return cycles


def test_the_graph_sees_lazy_and_function_local_imports():
    graph = import_graph()
    assert "ferray.ensemble._greedy" in graph["ferray.ensemble"]  # a lazy export
    assert "ferray.search._run" in graph["ferray.search"]
    assert "ferray.search._trial" in graph["ferray.search._run"]  # imported inside a function


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    for cycle in cycles:
        print("import cycle: " + " -> ".join(cycle))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_find_cycles_reports_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]


HEAVY = ("torch", "ray", "timm", "albumentations")


@pytest.mark.parametrize(
    "statement",
    [
        "import ferray.cli",
        "import ferray.cli; ferray.cli._build_parser()",  # what `ferray --help` runs
        "import ferray.predict",
        "from ferray.predict import Bundle, predict, write_predictions",
        "import ferray.run",
        "from ferray.run import RunLayout, WeightsMeta",
    ],
)
def test_light_entry_points_load_no_heavy_dependency(statement):
    code = (
        f"import json, sys; {statement}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


#: Modules cheap to import, or already loaded by any ferray module: imported at the top of a module.
LIGHT_PACKAGES = ("ferray.run", "ferray.metrics", "ferray.imaging", "ferray.errors", "ferray._io")

#: Function-local imports of light modules left in modules that import torch or Ray at top level.
#: Such a module pays for torch or Ray anyway, so hiding a light import in a function buys no
#: start-up time; lower this number when one goes, never raise it.
MAX_LIGHT_LOCAL_IMPORTS_IN_HEAVY_MODULES = 0


def _is_light(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or any(
        module == p or module.startswith(p + ".") for p in LIGHT_PACKAGES
    )


def _imported_modules(node: ast.Import | ast.ImportFrom, name: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = name.split(".")[: len(name.split(".")) - node.level]
        base = ".".join([*package, base] if base else package)
    return [base]


def light_local_imports_in_heavy_modules() -> list[str]:
    """``path:line module`` of each function-local light import in a module importing torch or Ray at top level."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        name, tree = _module_name(path), ast.parse(path.read_text(), str(path))
        top = {
            m.split(".")[0]
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for m in _imported_modules(node, name)
        }
        if not top & {"torch", "ray"}:
            continue
        functions = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
        local = {id(n): n for f in functions for n in _imports(f)}  # nested functions counted once
        for node in sorted(local.values(), key=lambda n: n.lineno):
            light = [m for m in _imported_modules(node, name) if _is_light(m)]
            found += [f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {m}" for m in light]
    return found


def test_modules_that_import_torch_or_ray_import_light_modules_at_the_top():
    found = light_local_imports_in_heavy_modules()
    for line in found:
        print("function-local light import: " + line)
    assert len(found) <= MAX_LIGHT_LOCAL_IMPORTS_IN_HEAVY_MODULES, (
        f"{len(found)} function-local imports of light modules in modules that import torch or Ray "
        f"(at most {MAX_LIGHT_LOCAL_IMPORTS_IN_HEAVY_MODULES}); move them to the top:\n" + "\n".join(found)
    )
