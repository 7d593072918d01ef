"""``RUN/ferray_run.json``, the manifest: what a sweep's run directory started with.

It holds the resolved spec the sweep started with (every default filled in), where that
spec came from, the trial budget and the Tune experiment path. ``ferray search`` writes it
when the sweep starts; ``ferray resume`` checks a resume against it and raises the budget
with ``--extend``.

>>> doc = read_manifest("runs/quickstart-20261130-120000")  # doctest: +SKIP
>>> doc["trials"], doc["spec"]["name"]                         # doctest: +SKIP
(8, 'quickstart')
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ferray import __version__
from ferray._io import atomic_write_json
from ferray.errors import ConfigError
from ferray.run.layout import RunLayout
from ferray.run.spec import SearchSpec

__all__ = ["MANIFEST_FORMAT", "resolved_spec", "write_manifest", "read_manifest", "update_manifest"]

#: The manifest format this ferray writes and reads (``ferray_run.json`` "format").
MANIFEST_FORMAT = 1

#: Keys every manifest holds.
_REQUIRED_KEYS = ("format", "spec", "trials", "experiment")


def resolved_spec(spec: SearchSpec) -> dict:
    """``spec`` as the manifest stores it: JSON values with every default filled in."""
    return json.loads(json.dumps(spec.model_dump(mode="json")))


def write_manifest(
    run: str | os.PathLike, spec: SearchSpec, *, spec_path: str | os.PathLike | None, experiment: str, trials: int
) -> Path:
    """Write ``run/ferray_run.json`` atomically; its path."""
    doc = {
        "format": MANIFEST_FORMAT,
        "ferray": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spec": resolved_spec(spec),
        "spec_source": None if spec_path is None else str(Path(spec_path).absolute()),
        "trials": int(trials),
        "experiment": experiment,
    }
    path = RunLayout(run).manifest
    atomic_write_json(path, doc)
    return path


def read_manifest(run: str | os.PathLike) -> dict:
    """The manifest of run directory ``run``.

    Raises:
        ConfigError: the file is missing, unreadable, or lacks a key every manifest has.
    """
    path = RunLayout(run).manifest
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable run manifest ({exc})") from None
    missing = [k for k in _REQUIRED_KEYS if k not in doc]
    if missing:
        raise ConfigError(f"{path}: not a ferray run manifest (missing {', '.join(missing)})")
    return doc


def update_manifest(run: str | os.PathLike, **changes: Any) -> None:
    """Set top-level keys of the manifest (e.g. ``trials`` after ``ferray resume --extend``)."""
    doc = read_manifest(run)
    doc.update(changes)
    atomic_write_json(RunLayout(run).manifest, doc)
