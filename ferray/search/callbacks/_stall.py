"""The stall guard: stops a trial whose actor went silent past its stall limit."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ray.tune import Callback

from ferray.runtime.compat import trial_actor
from ferray.search._stall import STALLED

__all__ = ["StallGuard"]

logger = logging.getLogger(__name__)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class StallGuard(Callback):
    """Stops a trial whose actor went silent for longer than the stall limit plus a margin.

    A trial's own function fails it when its fold workers go quiet
    (:mod:`ferray.search._trial`); this guard covers the trial actor itself hanging, which
    nothing inside it can report. The trial is ended (its actor killed, so Tune records an
    error and frees its resources), and its reason, ``stalled: ...``, goes to the results
    table.
    """

    def __init__(self, limits, check_every_s: float = 5.0, margin_s: float = 120.0) -> None:
        self.limits = limits
        self.check_every_s = check_every_s
        self.margin_s = margin_s
        self._last: dict[str, float] = {}
        self._longest: dict[str, float] = {}
        self._reasons: dict[str, str] = {}
        self._checked = 0.0

    def __getstate__(self) -> dict:
        return {
            "limits": self.limits,
            "check_every_s": self.check_every_s,
            "margin_s": self.margin_s,
            "_last": {},
            "_longest": {},
            "_reasons": {},
            "_checked": 0.0,
        }

    def reason(self, trial_id: str) -> str | None:
        return self._reasons.get(trial_id)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._last[trial.trial_id] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._last[trial.trial_id] = time.monotonic()
        seconds = result.get("epoch_seconds")
        if _finite(seconds):
            self._longest[trial.trial_id] = max(self._longest.get(trial.trial_id, 0.0), float(seconds))

    def _forget(self, trial) -> None:
        self._last.pop(trial.trial_id, None)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._forget(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._forget(trial)

    def on_step_begin(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._checked < self.check_every_s:
            return
        self._checked = now
        for trial in trials:
            tid = trial.trial_id
            if trial.status != "RUNNING" or tid in self._reasons:
                continue
            started = self._last.setdefault(tid, now)
            limit = self.limits.driver_limit(self._longest.get(tid), self.margin_s)
            if now - started > limit:
                self._stop(trial, now - started, limit)

    def _stop(self, trial, silent: float, limit: float) -> None:
        import ray

        reason = (
            f"{STALLED}: the trial sent nothing for {silent:.0f} s (driver limit {limit:.0f} s); its actor was stopped"
        )
        self._reasons[trial.trial_id] = reason
        actor = trial_actor(trial)
        if actor is None:
            logger.error(
                "trial %s is stalled (%s) and this Ray version gives ferray no way to stop it", trial.trial_id, reason
            )
            return
        logger.error("trial %s: %s", trial.trial_id, reason)
        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001
            logger.error("could not stop stalled trial %s: %s", trial.trial_id, exc)
