"""How the ``ferray`` commands print: JSON, wide tables on stdout, progress on stderr.

Imports only the standard library; rich is imported when a table is printed, so that
``ferray predict`` (which prints no rich table) runs where rich is not installed.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

__all__ = ["print_json", "print_wide", "to_stderr"]

#: The narrowest a table is printed, even in a narrower terminal.
MIN_WIDTH = 120
#: A table's width when stdout is not a terminal (and COLUMNS is unset).
PIPED_WIDTH = 160


def print_json(doc: Any) -> None:
    """Print ``doc`` as indented JSON (``--json``); values JSON lacks (paths, times) as strings."""
    print(json.dumps(doc, indent=2, default=str))


def print_wide(renderable: Any) -> None:
    """Print a rich renderable at the terminal's width, but never narrower than :data:`MIN_WIDTH`.

    Piped output (CI logs, ``| less``) gets :data:`PIPED_WIDTH` columns instead of rich's 80,
    so tables keep one line per row. A plain string is printed as is (no rich markup).
    """
    if isinstance(renderable, str):
        print(renderable)
        return
    from rich.console import Console

    Console(width=max(MIN_WIDTH, shutil.get_terminal_size((PIPED_WIDTH, 40)).columns)).print(renderable)


def to_stderr(line: str) -> None:
    """Print one progress or warning line on stderr (an ``echo`` for the library), keeping stdout
    for the command's result."""
    print(line, file=sys.stderr)
