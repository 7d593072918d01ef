"""The results callback: keeps the run's ``results.parquet`` current as trials report and end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ray.tune import Callback

from ferray.run.results import ResultsTable, write_table_atomic
from ferray.search._optuna import finished
from ferray.search.callbacks._writer import background_writer

if TYPE_CHECKING:
    from ferray.search.callbacks._stall import StallGuard

__all__ = ["ResultsCallback", "error_reason"]


def error_reason(trial) -> str:
    """The last meaningful line of a Tune trial's error (the worker's message, not Ray's frames)."""
    text = ""
    try:
        text = trial.get_error() or ""
    except Exception:  # noqa: BLE001 - the error file may be unreadable; fall back below
        pass
    if not text:
        # Before Tune syncs the driver's artifacts the error file exists only locally.
        try:
            local = getattr(trial, "error_file", None)
            text = Path(local).read_text() if local and Path(local).is_file() else ""
        except OSError:
            text = ""
    if not text:
        text = str(getattr(trial, "error_msg", "") or "")
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    # Prefer the innermost "SomeError: message" line (ferray's own errors end in Failed, Stalled, Error).
    for line in reversed(lines):
        head = line.split(": ", 1)[0]
        if (
            ": " in line
            and not line.startswith("File ")
            and head.rsplit(".", 1)[-1].endswith(("Error", "Exception", "Failed", "Stalled"))
        ):
            return f"{head.rsplit('.', 1)[-1]}: {line.split(': ', 1)[1]}"[:500]
    return (lines[-1] if lines else "unknown error")[:500]


class ResultsCallback(Callback):
    """Keeps ``results.parquet`` current: rewritten after every report and state change.

    Args:
        path: the results file.
        searcher: the :class:`PruneAwareOptunaSearch` (trial numbers and Optuna states).
        scheduler: the :class:`PruningASHA` (which trials were pruned), or ``None``.
        resume: continue the table already in ``path`` (a resumed sweep).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_epochs: int,
        searcher=None,
        scheduler=None,
        min_interval_s: float = 0.0,
        resume: bool = False,
        guard: StallGuard | None = None,
    ):
        self.path = Path(path)
        self.max_epochs = max_epochs
        self.table = ResultsTable.load(self.path) if resume and self.path.exists() else ResultsTable()
        self._searcher = searcher
        self._scheduler = scheduler
        self._min_interval = min_interval_s
        self._last_write = 0.0
        self._guard = guard

    def _number(self, trial) -> int | None:
        try:
            return self._searcher.ot_number(trial.trial_id) if self._searcher is not None else None
        except Exception:  # noqa: BLE001
            return None

    def _origin(self, trial) -> str | None:
        try:
            return self._searcher.origin(trial.trial_id) if self._searcher is not None else None
        except Exception:  # noqa: BLE001 - bookkeeping never stops the sweep
            return None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_guard"] = None
        return state

    def _write(self, force: bool = False) -> None:
        """Hand a snapshot of the table to the background writer (newest snapshot wins)."""
        now = time.monotonic()
        if not force and now - self._last_write < self._min_interval:
            return
        rows, path = self.table.rows(), self.path
        background_writer().submit(f"results:{path}", lambda: write_table_atomic(rows, path))
        self._last_write = now

    def write_now(self) -> None:
        """Hand the table to the writer now (after a change outside Tune's events)."""
        self._write(force=True)

    def flush(self, timeout: float = 60.0) -> bool:
        return background_writer().flush(timeout)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.table.add_trial(trial.trial_id, dict(trial.config), self._number(trial), self._origin(trial))
        self.table.set_state(trial.trial_id, "RUNNING")
        self._write()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        known = self.table.state(trial.trial_id) is not None
        origin = None if known else self._origin(trial)
        self.table.add_result(trial.trial_id, dict(trial.config), result, self._number(trial), origin)
        self._write()

    def on_trial_complete(self, iteration, trials, trial, **info):
        state = "COMPLETED"
        ot_state = getattr(self._searcher, "states", {}).get(trial.trial_id) if self._searcher else None
        pruned = self._scheduler is not None and trial.trial_id in self._scheduler.pruned
        last = trial.last_result or {}
        if pruned:
            state = "PRUNED"
        elif ot_state == "PRUNED" or not finished(last, self.max_epochs):
            state = "STOPPED"
        elif ot_state == "FAIL":
            state = "ERROR"
            self.table.set_state(trial.trial_id, state, error="the final fold-mean metric is not finite")
            self._write(force=True)
            return
        self.table.set_state(trial.trial_id, state)
        self._write(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.table.state(trial.trial_id) is None:
            self.table.add_trial(trial.trial_id, dict(trial.config), self._number(trial), self._origin(trial))
        reason = self._guard.reason(trial.trial_id) if self._guard is not None else None
        self.table.set_state(trial.trial_id, "ERROR", error=reason or error_reason(trial))
        self._write(force=True)

    def on_experiment_end(self, trials, **info):
        # Trials still pending or running when the sweep ended (time limit, Ctrl-C).
        for trial in trials:
            if self.table.state(trial.trial_id) in ("PENDING", "RUNNING"):
                self.table.set_state(trial.trial_id, "STOPPED")
        self._write(force=True)
        self.flush()
