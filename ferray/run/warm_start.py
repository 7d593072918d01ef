"""Warm starts in the run layer: the ``search.warm_start`` setting, trial origins and ``warm_start.json``.

A sweep may start from earlier runs (:mod:`ferray.search._warm` does the work). What the
run directory records of it lives here, below every stage:

* each trial's **origin** (results.parquet's ``origin`` column, ``ferray status``):
  :data:`COLD` for a configuration the sampler chose, ``enqueued:<source>`` for a best
  configuration of an earlier run evaluated first (:func:`enqueued`). The finished trials
  of a compatible earlier run are copied into the Optuna study as :data:`SEEDED` history:
  they inform the sampler but are not trials of this run (no folder, no predictions, no
  row in results.parquet);
* ``RUN/warm_start.json``: what was done with each source and why (:func:`read_warm_start`).

>>> WarmStartConfig.model_validate("runs/first").sources
['runs/first']
>>> enqueued("first")
'enqueued:first'
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import Field, model_validator

from ferray._config import StrictModel
from ferray.run.layout import RunLayout

__all__ = [
    "WarmStartConfig",
    "COLD",
    "SEEDED",
    "ENQUEUED",
    "ORIGIN_ATTR",
    "enqueued",
    "read_warm_start",
]

#: Origin of a trial whose configuration the sampler chose.
COLD = "cold"
#: Origin of an earlier run's finished trial copied into the study (history, not a trial of this run).
SEEDED = "seeded"
#: Prefix of the origin of an earlier run's configuration evaluated first (``enqueued:<source>``).
ENQUEUED = "enqueued"
#: Optuna user attribute holding a trial's origin.
ORIGIN_ATTR = "ferray_origin"


def enqueued(label: str) -> str:
    """The origin of a configuration enqueued from the source labelled ``label``."""
    return f"{ENQUEUED}:{label}"


class WarmStartConfig(StrictModel):
    """``search.warm_start``: earlier runs a sweep starts from.

    A source is a run folder, a run folder on storage (``s3://...``, ``gs://...``,
    ``file://...``) or an Optuna study file (a run's ``optuna.db``, or a journal file).
    From a source with the same data (fingerprint), the same metric and fixed settings, and a
    space holding every parameter value of its trials, the finished trials seed the sampler
    with their scores; from any other, its ``enqueue_top`` best configurations, projected onto
    this space, are evaluated first. A bare path or list of paths means ``sources``.
    """

    sources: list[str] = Field(default_factory=list, description="Earlier runs or study files to start from.")
    enqueue_top: int = Field(
        5, ge=1, description="Best configurations evaluated first from a source whose trials cannot seed the sampler."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"sources": [value]}
        if isinstance(value, (list, tuple)):
            return {"sources": list(value)}
        if isinstance(value, dict) and isinstance(value.get("sources"), str):
            return {**value, "sources": [value["sources"]]}
        return value

    @model_validator(mode="after")
    def _sources(self) -> WarmStartConfig:
        for source in self.sources:
            if not source.strip():
                raise ValueError("an empty source; give a run folder, a storage URI of one, or an Optuna study file")
        twice = [s for i, s in enumerate(self.sources) if s in self.sources[:i]]
        if twice:
            raise ValueError(f"source {twice[0]!r} is listed twice; list each source once")
        return self


def read_warm_start(run_dir: str | os.PathLike) -> dict | None:
    """``RUN/warm_start.json``: ``{"sources": [{source, label, action, reason, trials, notes}]}``, or ``None``.

    ``action`` is ``seeded`` (its finished trials copied into the study) or ``enqueued`` (its
    best configurations evaluated first); ``trials`` how many; ``notes`` the parameters or
    configurations that did not carry over, and why. ``None`` for a sweep that started cold
    (or a file that cannot be read: status never fails on it).
    """
    path = RunLayout(run_dir).warm_start
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("sources"), list) else None
