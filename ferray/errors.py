"""Exceptions raised for bad user input.

Every error ferray raises for something the user wrote or pointed at derives from
:class:`FerrayError`. The CLI prints its message without a traceback and exits with
code 2; Python callers can catch it like any ``ValueError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["FerrayError", "ConfigError", "DataError", "closest"]


class FerrayError(ValueError):
    """A user-facing error: the message names the file, key or value and what is accepted."""


class ConfigError(FerrayError):
    """A configuration or search-space file is invalid."""


class DataError(FerrayError):
    """A dataset, label file or image cannot be used as given."""


def closest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ``"; did you mean 'x'?"`` suffix for ``word``, or ``""`` when nothing is close."""
    matches = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    if len(matches) == 1:
        return f"; did you mean '{matches[0]}'?"
    return "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
