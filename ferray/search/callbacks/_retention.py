"""The retention callback: applies the run's retention policy as trials end."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ray.tune import Callback

from ferray.run.retention import clean_trials, plan_retention
from ferray.run.status import summarise_trials
from ferray.search.callbacks._results import ResultsCallback
from ferray.search.callbacks._writer import background_writer

__all__ = ["RetentionCallback"]

logger = logging.getLogger(__name__)


class RetentionCallback(Callback):
    """Applies the run's retention policy (:mod:`ferray.run.retention`) as trials end.

    Each pass runs on the background writer over the trials whose end has settled: a completed
    trial at once (its Train run has returned, every upload done), a pruned or errored one
    ``settle_s`` later (Tune stopped its actor; the Train controller and an upload still in
    flight go with it within seconds), every ended trial at the experiment's end. A pass ranks
    the completed trials again, so one pushed out of the best N loses its weights then. Trial
    states come from the results table (``results`` must come before this callback).
    """

    def __init__(
        self,
        run_dir: str | Path,
        config,
        *,
        top_k: int,
        results: ResultsCallback,
        metric: str,
        mode: str,
        settle_s: float = 30.0,
        pool: str | int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.top_k = top_k
        self.pool = pool  # ensemble.greedy_pool: whose weights wait for the ensemble
        self.results = results
        self.metric, self.mode = metric, mode
        self.settle_s = settle_s
        self._due: dict[str, float] = {}
        self._settled: set[str] = set()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_due"], state["_settled"] = {}, set()
        return state

    def _ended(self, trial, settle: float) -> None:
        self._due.setdefault(trial.trial_id, time.monotonic() + settle)
        self._maybe_pass()

    def _maybe_pass(self, final: bool = False) -> None:
        now = time.monotonic()
        table = self.results.table
        ready = {tid for tid, due in self._due.items() if due <= now}
        if final:
            # Pruned trials go now too (at worst a late upload leaves one checkpoint behind for
            # `ferray prune`); a just-errored trial waits for the next pass (prune, the pipeline):
            # removing a checkpoint folder Train is still registering would break its retry.
            ready |= {tid for tid in self._due if table.state(tid) != "ERROR"}
            # Trials that ended in an earlier session of a resumed sweep.
            ready |= {
                r["trial_id"]
                for r in table.rows()
                if r["state"] in ("COMPLETED", "PRUNED", "ERROR") and r["trial_id"] not in self._due
            }
        if not ready:
            return
        for tid in ready:
            self._due.pop(tid, None)
        self._settled |= ready
        rows, settled = self.results.table.rows(), frozenset(self._settled)
        background_writer().submit(f"retention:{self.run_dir}", lambda: self._apply(rows, settled))

    def _apply(self, rows: list[dict], settled: frozenset) -> None:  # background thread

        trials = summarise_trials(rows, self.metric, self.mode)
        cleanups, _ = plan_retention(self.run_dir, trials, self.config, top_k=self.top_k, only=settled, pool=self.pool)
        for plan in clean_trials(self.run_dir, cleanups, source="sweep"):
            logger.info("retention: %s", plan.describe(self.run_dir))

    def on_trial_complete(self, iteration, trials, trial, **info):
        completed = self.results.table.state(trial.trial_id) == "COMPLETED"
        self._ended(trial, 0.0 if completed else self.settle_s)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, self.settle_s)

    def on_step_end(self, iteration, trials, **info):
        if self._due:
            self._maybe_pass()

    def on_experiment_end(self, trials, **info):
        self._maybe_pass(final=True)
        background_writer().flush(timeout=300.0)
