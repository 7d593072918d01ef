"""A cleaned trial's ``retention.json``: what the retention policy removed, and what a restart needs.

Before the policy (:mod:`ferray.run.retention`) removes a trial's checkpoints it records in
``<trial>/retention.json`` what went and the trial's per-epoch reports. This module reads
that record back: :func:`ended_history` gives the reports a restarted trial says again (a
driver that died before Tune recorded the trial's end), :func:`retry_notes` what a retried
errored trial continues from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ferray.errors import DataError
from ferray.run.layout import RunLayout, TrialLayout

__all__ = ["RECORD_FORMAT", "read_record", "checkpoint_history", "ended_history", "retry_notes"]

#: The format of ``retention.json`` this ferray writes.
RECORD_FORMAT = 1


# ferray.runtime.compat (Train's checkpoint list) imports Ray, and this package must import
# without it: the functions below import it when called.


def read_record(trial: TrialLayout) -> dict:
    """The trial's ``retention.json`` (``{}`` when it has none or it is unreadable)."""
    try:
        doc = json.loads(trial.retention.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def checkpoint_history(trial: TrialLayout) -> list[dict]:
    """The trial's per-epoch reports, from its last registered checkpoint (or Train's list)."""
    from ferray.runtime.compat import (
        TRAIN_SNAPSHOT,
        read_train_snapshot,
        snapshot_checkpoints,
    )
    from ferray.training.checkpoint import load_fold_history

    doc = read_train_snapshot(trial.checkpoints / TRAIN_SNAPSHOT)
    latest = snapshot_checkpoints(doc)[1] if doc is not None else None
    if latest is not None:
        try:
            history = load_fold_history(trial.fold_checkpoint(trial.checkpoints / latest, 0))
            if history:
                return history
        except DataError:
            pass
        metrics = (doc.get("latest_checkpoint_result") or {}).get("metrics")
        if isinstance(metrics, dict) and metrics:
            return [metrics]
    return []


def ended_history(trial: TrialLayout) -> list[dict] | None:
    """The reports to replay when Tune restarts a trial the policy already cleaned as ended.

    ``None`` unless ``retention.json`` records the trial as completed or pruned with its
    checkpoints removed (a trial that still has a checkpoint resumes from it as usual).
    """
    from ferray.runtime.compat import TRAIN_SNAPSHOT

    record = read_record(trial)
    if record.get("state") not in ("COMPLETED", "PRUNED") or not record.get("history"):
        return None
    if (trial.checkpoints / TRAIN_SNAPSHOT).exists():
        return None
    return [dict(r) for r in record["history"] if isinstance(r, dict)]


def retry_notes(run_dir: str | os.PathLike, trial_ids: Iterable[str]) -> list[str]:
    """For each errored trial a retry continues: what it continues from, and what the policy took.

    >>> retry_notes("runs/exp1", ["3f2a_00004"])                                  # doctest: +SKIP
    ['3f2a_00004: restarts from epoch 1: the retention policy removed its checkpoints (epochs 1-3 lost)']
    """
    from ferray.runtime.compat import (
        TRAIN_SNAPSHOT,
        read_train_snapshot,
        snapshot_checkpoints,
    )

    run = RunLayout(Path(run_dir))
    out = []
    for tid in trial_ids:
        trial = run.trial(tid)
        record = read_record(trial)
        removed = record.get("removed") or []
        doc = read_train_snapshot(trial.checkpoints / TRAIN_SNAPSHOT)
        latest = snapshot_checkpoints(doc)[1] if doc is not None else None
        if latest is not None and (trial.checkpoints / latest).is_dir():
            epoch = latest.rsplit("_", 1)[-1].lstrip("0") or "0"
            note = f"{tid}: continues after epoch {epoch} (its last checkpoint, {latest})"
            if any(r.startswith(TrialLayout.WEIGHTS) for r in removed):
                note += "; its weights were removed by the retention policy and are written again when it ends"
        elif any(r.startswith(TrialLayout.CHECKPOINTS) for r in removed):
            note = (
                f"{tid}: restarts from epoch 1: the retention policy removed its checkpoints "
                f"({record.get('reason', 'retention')}); the epochs it had trained are lost"
            )
        else:
            note = f"{tid}: restarts from epoch 1 (it errored before its first checkpoint was complete)"
        out.append(note)
    return out
