"""The tests mirror the package: one folder per subpackage, and no two test modules share a name.

pytest imports a test folder without ``__init__.py`` by putting it on ``sys.path`` ("prepend"
import mode): two ``test_cli.py`` in two such folders would be one module to Python, and the
second would fail to import. A module shared by several subpackages (``_cli``, ``_build``,
``config``) is tested in ``test_<package>_<module>.py``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "ferray"
#: Files pytest gives package-relative names, or that are not modules a test imports by name.
SHARED_NAMES = {"conftest.py", "__init__.py"}
#: Test folders that are not a ferray subpackage.
OTHER_FOLDERS = {"benchmarks"}


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts and p.name not in SHARED_NAMES)


def test_test_module_basenames_are_unique():
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        by_name[path.name].append(str(path.relative_to(TESTS)))
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert shared == {}, f"test modules sharing a name (prefix them with their package): {shared}"


def test_every_test_folder_is_named_after_a_ferray_subpackage():
    folders = {p.parent.relative_to(TESTS).parts[0] for p in _modules() if p.parent != TESTS}
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders - subpackages - OTHER_FOLDERS == set()
