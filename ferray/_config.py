"""YAML loading and validation shared by every typed configuration.

Each config area (training, search, ...) is a pydantic model deriving from
:class:`StrictModel`, which rejects unknown keys. :func:`load_yaml_model` reads a YAML
file keeping line numbers and turns pydantic's errors into one :class:`ConfigError`
whose lines read ``file:line: key.path: message``, with a did-you-mean for misspelt keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ferray.errors import ConfigError, closest

__all__ = ["StrictModel", "load_yaml", "load_yaml_model", "validate_model", "format_errors", "flatten_keys"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = {}
    lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise ConfigError(
                f"{loader.name}:{key_node.start_mark.line + 1}: key '{key}' appears twice (first at line {lines[key]})"
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
        lines[key] = key_node.start_mark.line + 1
    loader.key_lines[id(mapping)] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class YamlDoc(dict):
    """A parsed YAML mapping that remembers its file and the line of each key path."""

    path: str = "<string>"
    lines: dict[tuple, int]

    def line_of(self, loc: tuple) -> int | None:
        """Line of the deepest key in ``loc`` that the file defines."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def load_yaml(source: str | os.PathLike, *, text: str | None = None) -> YamlDoc:
    """Parse a YAML mapping from ``source`` (a path) or ``text``; errors name file and line."""
    name = str(source)
    if text is None:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{name}: no such file")
        text = path.read_text(encoding="utf-8")
    loader = _LineLoader(text)
    loader.name = name
    loader.key_lines = {}
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping of keys at the top level, got {type(data).__name__}")
    doc = YamlDoc(data)
    doc.path = name
    doc.lines = {}

    def walk(obj: Any, prefix: tuple) -> None:
        if isinstance(obj, dict):
            for key, line in loader.key_lines.get(id(obj), {}).items():
                doc.lines[prefix + (key,)] = line
            for key, value in obj.items():
                walk(value, prefix + (key,))
        elif isinstance(obj, list):
            for i, value in enumerate(obj):
                walk(value, prefix + (i,))

    walk(data, ())
    return doc


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names (and aliases) valid at the parent of ``loc``, for did-you-mean hints."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_of(fields[part].annotation)
    fields = getattr(current, "model_fields", None) or {}
    return list(fields)


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def format_errors(exc: ValidationError, model: type[BaseModel], doc: YamlDoc | None = None, prefix: tuple = ()) -> str:
    """Render pydantic errors as ``file:line: key.path: message`` lines."""
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and "]" in p))
        key = ".".join(str(p) for p in prefix + loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + closest(str(loc[-1]), _allowed_keys(model, loc))
            valid = _allowed_keys(model, loc)
            if valid and "did you mean" not in msg:
                msg += f"; valid keys: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("model_type", "dict_type"):
            msg = f"{msg} (got {err['input']!r})"
        where = ""
        if doc is not None:
            line = doc.line_of(prefix + loc)
            where = f"{doc.path}:{line}: " if line else f"{doc.path}: "
        out.append(f"{where}{key}: {msg}")
    return "\n".join(out)


def validate_model(model: type[M], data: dict, doc: YamlDoc | None = None, prefix: tuple = ()) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, model, doc, prefix)) from None


def load_yaml_model(model: type[M], path: str | os.PathLike) -> M:
    """Load and validate a YAML file as ``model``."""
    doc = load_yaml(path)
    return validate_model(model, dict(doc), doc)


def flatten_keys(obj: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"dotted.key": leaf}`` (an empty mapping is a leaf).

    >>> flatten_keys({"run": {"seed": 0, "amp": "off"}, "tags": {}})
    {'run.seed': 0, 'run.amp': 'off', 'tags': {}}
    """
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten_keys(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}
