"""Reconcile a resumed sweep's three records of its trials: Tune's state, the Optuna study, the results table.

They are written at different moments (the study at once, the results table within
milliseconds, Tune's experiment state every few seconds), so a kill leaves them apart. On
a resumed sweep's first step, once Tune has restored its trials:

* a Tune trial the restored searcher never saw is bound to its own Optuna trial;
* a trial that had started but that Tune never recorded (killed during its start-up,
  before its first report) is a *ghost*: the next new trial takes its id, folder and Optuna
  trial, so it continues as itself and the budget counts it once. Where that cannot be done,
  its row is dropped and its Optuna trial is handed to the next new trial;
* at a finished sweep's end, an Optuna trial that no Tune trial took is told FAIL, so the
  study holds no trial left running.
"""

from __future__ import annotations

import logging

from ray.tune import Callback

from ferray.runtime.compat import available

__all__ = ["RestoredTrials"]

logger = logging.getLogger(__name__)

_FINAL = ("COMPLETED", "PRUNED", "ERROR", "STOPPED")


class RestoredTrials(Callback):
    """See the module docstring. ``results`` is the sweep's :class:`ResultsCallback`."""

    def __init__(self, searcher, results, *, echo=None) -> None:
        self.searcher = searcher
        self.results = results
        self.echo = echo
        self._done = False

    def __getstate__(self) -> dict:
        return {"searcher": None, "results": None, "echo": None, "_done": True}

    def on_step_begin(self, iteration, trials, **info):
        if self._done or self.searcher is None:
            return
        self._done = True

        known = {t.trial_id for t in trials}
        self.searcher.adopt(known)
        table = self.results.table
        reuse = available("trial-id")
        changed = False
        for tid in table.trial_ids():
            if tid in known or table.state(tid) in _FINAL:
                continue
            if reuse and self.searcher.reserve(tid):
                self._say(f"resume {tid}: it was starting when the sweep stopped; it continues as itself")
            else:
                table.drop(tid)
                changed = True
                self._say(
                    f"resume {tid}: it was starting when the sweep stopped and Tune never recorded it; "
                    "its configuration runs again under a new trial id"
                )
        if changed:
            self.results.write_now()

    def on_experiment_end(self, trials, **info):
        if self.searcher is None or any(t.status not in ("TERMINATED", "ERROR") for t in trials):
            return  # interrupted: what is still open continues on the next resume
        closed = self.searcher.close_orphans("no trial of the sweep took it (started before an interruption)")
        if closed:
            logger.info("closed %d Optuna trial(s) that no Tune trial took", closed)

    def _say(self, line: str) -> None:
        logger.info(line)
        if self.echo is not None:
            self.echo(line)
