"""A griffe extension for the API pages: ferray's exports and docstrings, read as Markdown.

ferray's docstrings are written for ``help()`` and doctest: examples are bare ``>>>``
lines and cross-references are Sphinx roles (``:func:`train```). Rendered as Markdown, a
doctest's output (``['happy', 'angry']``) reads as a link and a role as stray colons. This
extension rewrites each docstring before it is parsed, leaving the source untouched:

* consecutive ``>>>`` / ``...`` lines and their output become a fenced ``pycon`` block
  (doctest flags such as ``# doctest: +SKIP`` dropped);
* ``:func:`name```, ``:class:`~a.b.C```, ``:mod:``, ``:meth:``, ``:attr:``, ``:data:``,
  ``:exc:`` and ``:obj:`` become inline code (``name()`` for functions and methods);
* a paragraph ending in ``::`` before an indented literal block ends in ``:``.

It also reads a package's exports, ``__all__ = list(_EXPORTS)`` (every package, see
``ferray/_lazy.py``): griffe reads source without running it, so it takes the names, in
order, from the ``_EXPORTS`` dict literal; the package's ``if TYPE_CHECKING:`` imports give
griffe the object each name is.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(func|meth|class|mod|attr|data|exc|obj):`~?([^`]+)`")
_FLAGS = re.compile(r"\s*#\s*doctest:.*$")
_PROMPT = re.compile(r"^(\s*)(>>>|\.\.\.)( |$)")


def _role(match: re.Match) -> str:
    kind, target = match.groups()
    if match.group(0).split("`", 1)[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]  # Sphinx's ``~``: the last component only
    if kind in ("func", "meth") and not target.endswith(")"):
        target += "()"
    return f"`{target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def markdown_docstring(text: str) -> str:
    """``text`` with its doctests fenced, its Sphinx roles as code and ``::`` as ``:``."""
    lines = text.splitlines()
    out: list[str] = []
    literal_indent: int | None = None  # inside an indented ``::`` literal block: leave it as it is
    i = 0
    while i < len(lines):
        line = lines[i]
        if literal_indent is not None:
            if line.strip() and _indent(line) <= literal_indent:
                literal_indent = None
            else:
                out.append(_FLAGS.sub("", line) if _PROMPT.match(line) else line)
                i += 1
                continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(">>>"):
            stripped = line.rstrip()[:-1]
            out.append(_ROLE.sub(_role, stripped if stripped.strip() != ":" else ""))
            literal_indent = _indent(line)
            i += 1
            continue
        prompt = _PROMPT.match(line)
        if prompt and prompt.group(2) == ">>>":
            pad = prompt.group(1)
            block = []
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= len(pad):
                block.append(_FLAGS.sub("", lines[i][len(pad) :]))
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.extend([f"{pad}```pycon", *(pad + b for b in block), f"{pad}```"])
            if i < len(lines) and lines[i].strip():
                out.append("")
            continue
        out.append(_ROLE.sub(_role, line))
        i += 1
    return "\n".join(out)


class MarkdownDocstrings(griffe.Extension):
    """Rewrites every docstring of the loaded packages with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.exports or "_EXPORTS" not in mod.members:
            return
        try:
            names = ast.literal_eval(str(mod.members["_EXPORTS"].value))
        except (ValueError, SyntaxError, AttributeError):
            return
        if isinstance(names, dict):
            mod.exports = list(names)
