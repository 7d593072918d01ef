"""``results.parquet``: one row per trial per epoch, rewritten atomically as results arrive.

:class:`ResultsTable` is plain Python (tested without Ray); :func:`results_callback` wraps
it in a Tune ``Callback`` on the driver. Columns: ``trial_id``, ``trial_number`` (Optuna),
``state`` (RUNNING, COMPLETED, PRUNED, ERROR, STOPPED), ``error``, ``origin`` (``cold``, or
``enqueued:<source>`` for an earlier run's configuration, see :mod:`ferray.run.warm_start`), ``param.<dotted path>``
for each sampled parameter, ``epoch``, the fold-mean/std metrics, ``epoch_seconds``,
``time_total_s`` and ``timestamp``; the last epoch of a finished trial carries ``oof_*``
and ``holdout_*`` metrics, and the first epoch the trial's start-up (``startup_s`` and its
phases, ``heavy_modules``; see :data:`ferray.training._worker.STARTUP_KEYS`) with
``trial_boot_s``, the trial process's own start before the trial function (before
``startup_s``'s origin). Every row carries the model's ``params`` and ``macs``; the last row
of a finished trial its trained model's ``latency_ms`` (batch 1, ms per image),
``latency_ms_b64`` (ms per batch of 64) and ``latency_threads`` (see :mod:`ferray.training.cost`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from ferray._io import atomic_write
from ferray.run.warm_start import COLD

__all__ = ["ResultsTable", "write_table_atomic", "read_results", "RESULT_KEYS", "STATES"]

#: Trial states in results.parquet and ``ferray status``.
STATES = ("PENDING", "RUNNING", "COMPLETED", "PRUNED", "STOPPED", "ERROR")

#: States a trial never leaves: its rows are final (a resumed sweep leaves them untouched).
FINAL_STATES = ("COMPLETED", "PRUNED")

_HEAD = ("trial_id", "trial_number", "state", "error", "origin")

#: Keys of a trial report copied into results.parquet (plus ``val_*_fold<i>``, ``oof_*``, ``holdout_*``).
RESULT_KEYS = (
    "epoch",
    "metric",
    "val_accuracy_mean",
    "val_accuracy_std",
    "val_macro_f1_mean",
    "val_macro_f1_std",
    "val_loss_mean",
    "val_loss_std",
    "val_au_f1_mean",
    "val_au_f1_std",
    "train_loss_mean",
    "lr",
    "epoch_seconds",
    "time_total_s",
    "final",
    "stopped_early",
    # A trial's start-up, in its first epoch's row (ferray.training._worker.STARTUP_KEYS).
    "startup_s",
    "trial_boot_s",
    "trial_setup_s",
    "worker_start_s",
    "worker_spawn_s",
    "worker_process_s",
    "import_s",
    "data_get_s",
    "model_build_s",
    "first_batch_s",
    "startup_cpu_s",
    "heavy_modules",
    # The trial's cost (= ferray.training.cost.COST_KEYS): parameters and MACs in every row,
    # latency in the last row (and in every row when a latency objective asked for it).
    "params",
    "macs",
    "latency_ms",
    "latency_ms_b64",
    "latency_threads",
)


def _keep(key: str) -> bool:
    return key in RESULT_KEYS or key.startswith(("val_accuracy_fold", "oof_", "holdout_"))


class ResultsTable:
    """Trials' per-epoch rows and states, in the order they arrive.

    >>> t = ResultsTable()
    >>> t.add_result("a", {"optim.lr": 0.01}, {"epoch": 1, "metric": 0.4})
    >>> t.set_state("a", "PRUNED")
    >>> [(r["trial_id"], r["state"], r["param.optim.lr"]) for r in t.rows()]
    [('a', 'PRUNED', 0.01)]
    """

    def __init__(self) -> None:
        self._epochs: dict[str, list[dict]] = {}
        self._params: dict[str, dict] = {}
        self._state: dict[str, str] = {}
        self._error: dict[str, str | None] = {}
        self._number: dict[str, int | None] = {}
        self._origin: dict[str, str] = {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResultsTable:
        """The table a ``results.parquet`` holds (to continue a resumed sweep)."""
        table = cls()
        for r in read_results(path):
            tid = r["trial_id"]
            if tid not in table._epochs:
                params = {k[len("param.") :]: v for k, v in r.items() if k.startswith("param.") and v is not None}
                table.add_trial(tid, params, r.get("trial_number"), origin=r.get("origin"))
                table._state[tid] = r["state"]
                if r.get("error") is not None:
                    table._error[tid] = r["error"]
            row = {k: v for k, v in r.items() if k not in _HEAD and not k.startswith("param.") and v is not None}
            if r.get("epoch") is not None:
                table._epochs[tid].append(row)
        return table

    def final(self, trial_id: str) -> bool:
        """Whether the trial ended (completed or pruned): its rows no longer change."""
        return self._state.get(trial_id) in FINAL_STATES

    def add_trial(self, trial_id: str, params: dict, number: int | None = None, origin: str | None = None) -> None:
        """Record a trial; its ``origin`` (default ``cold``) is the first one given."""
        self._epochs.setdefault(trial_id, [])
        self._params[trial_id] = dict(params)
        self._state.setdefault(trial_id, "PENDING")
        if number is not None:
            self._number[trial_id] = number
        if origin is not None:
            self._origin.setdefault(trial_id, origin)

    def add_result(
        self, trial_id: str, params: dict, result: dict, number: int | None = None, origin: str | None = None
    ) -> None:
        """Record one epoch's report (a later report of the same epoch replaces it).

        A trial that already ended keeps its rows: a resumed sweep may replay its last report.
        """
        if self.final(trial_id):
            return
        if trial_id not in self._params:
            self.add_trial(trial_id, params, number, origin)
        row = {k: v for k, v in result.items() if _keep(k)}
        row["timestamp"] = result.get("timestamp", time.time())
        epochs = self._epochs[trial_id]
        same = [i for i, r in enumerate(epochs) if r.get("epoch") == row.get("epoch")]
        if same:  # the epoch again: a final re-report, or recomputed after a resume
            epochs[same[-1]] = row
        else:
            epochs.append(row)
        if self._state.get(trial_id) in (None, "PENDING"):
            self._state[trial_id] = "RUNNING"

    def set_state(self, trial_id: str, state: str, error: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
        if self.final(trial_id):
            return
        self._state[trial_id] = state
        self._epochs.setdefault(trial_id, [])
        self._params.setdefault(trial_id, {})
        if error is not None:
            self._error[trial_id] = error
        elif state != "ERROR":
            self._error.pop(trial_id, None)  # an errored trial retried by a resumed sweep

    def state(self, trial_id: str) -> str | None:
        return self._state.get(trial_id)

    def trial_ids(self) -> list[str]:
        return list(self._epochs)

    def drop(self, trial_id: str) -> None:
        """Forget a trial (one that never ran an epoch and whose configuration runs again)."""
        for table in (self._epochs, self._params, self._state, self._number, self._error, self._origin):
            table.pop(trial_id, None)

    def rows(self) -> list[dict]:
        """Flat rows: one per trial per epoch; a trial without reports gets one row."""
        out = []
        for trial_id, epochs in self._epochs.items():
            head = {
                "trial_id": trial_id,
                "trial_number": self._number.get(trial_id),
                "state": self._state.get(trial_id, "PENDING"),
                "error": self._error.get(trial_id),
                "origin": self._origin.get(trial_id, COLD),
            }
            head.update({f"param.{k}": v for k, v in self._params.get(trial_id, {}).items()})
            for row in epochs or [{}]:
                out.append({**head, **row})
        return out

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``results.parquet`` atomically (a reader never sees a half-written file)."""
        return write_table_atomic(self.rows(), path)


def _column(values: list) -> Any:
    import pyarrow as pa

    clean = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    try:
        return pa.array(clean)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        # Mixed types (a categorical of numbers and strings): keep them readable as text.
        return pa.array([None if v is None else str(v) for v in clean], type=pa.string())


def write_table_atomic(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write dict rows (union of keys, missing -> null) as Parquet via temp file + rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    for required in ("trial_id", "state", "epoch"):
        columns.setdefault(required, None)
    table = (
        pa.table({c: _column([r.get(c) for r in rows]) for c in columns})
        if rows
        else pa.table({c: pa.array([], type=pa.string()) for c in columns})
    )

    atomic_write(path, lambda stream: pq.write_table(table, stream))
    return path


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``results.parquet`` as dicts.

    The file is read in one go: a sweep replaces it while it runs, and a reader that opened
    it twice (footer, then pages) could mix two versions. The table is small, so it is
    decoded on this thread: pyarrow's pool reading from an in-memory buffer can leave a
    thread that aborts the interpreter at exit ("terminate called without an active
    exception", exit 134), which broke ``ferray status --json | jq``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(Path(path).read_bytes()), use_threads=False).to_pylist()
