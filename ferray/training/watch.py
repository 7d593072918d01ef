"""Bounded waits on a Ray Train run: a silent run is an error that says what was awaited.

:class:`StallLimits` says how long a run may go without a report; :func:`fit_watched`
runs ``trainer.fit()`` on a helper thread and hands each report (posted by a Train
callback to a Ray queue) to ``on_report`` on the calling thread, raising
:class:`TrainingStalled` when the run goes quiet for longer than the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ferray.errors import FerrayError

__all__ = ["StallLimits", "TrainingStalled", "fit_watched", "STALLED"]

#: First word of a stalled run's error reason.
STALLED = "stalled"


class TrainingStalled(FerrayError):
    """A training run's workers stopped reporting for longer than the stall limit."""


@dataclass(frozen=True)
class StallLimits:
    """How long a run may go without a report before it is failed as ``stalled``.

    ``startup_s`` bounds the time to the first report (process start, imports, worker group,
    first epoch). Afterwards the limit is ``every_s`` when set, else
    ``max(min_s, factor * longest epoch so far)``.
    """

    startup_s: float = 900.0
    every_s: float | None = None
    factor: float = 5.0
    min_s: float = 300.0

    def limit(self, longest_epoch_s: float | None) -> float:
        if longest_epoch_s is None:
            return self.startup_s
        if self.every_s is not None:
            return self.every_s
        return max(self.min_s, self.factor * longest_epoch_s)

    def driver_limit(self, longest_epoch_s: float | None, margin_s: float = 120.0) -> float:
        """A second guard's limit (on a sweep's driver): this limit plus a margin."""
        return self.limit(longest_epoch_s) + margin_s

    def stalled(self, silent_s: float, longest_epoch_s: float | None) -> str | None:
        """The reason when ``silent_s`` seconds without a report is past the limit, else ``None``."""
        limit = self.limit(longest_epoch_s)
        if silent_s <= limit:
            return None
        what = "the first report" if longest_epoch_s is None else "a report"
        return (
            f"{STALLED}: no report from the workers for {silent_s:.0f} s while waiting for {what} (limit {limit:.0f} s)"
        )


def fit_watched(
    trainer,
    take: Callable[[float], list],
    on_report: Callable[[dict], Any],
    limits: StallLimits = StallLimits(),
    poll_s: float = 1.0,
):
    """``trainer.fit()`` with every report handed to ``on_report`` and a bound on silence.

    ``take(timeout)`` returns the reports posted since the last call (waiting at most
    ``timeout`` seconds for one). Returns ``fit``'s result once it has returned and every
    report it posted has been handed over; re-raises its error.

    Raises:
        TrainingStalled: no report for longer than ``limits`` allow.
    """
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ferray-fit", daemon=True)
    thread.start()
    longest: float | None = None
    last = time.monotonic()
    while True:
        alive = thread.is_alive()
        items = take(poll_s if alive else 0.0)
        for report in items:
            seconds = report.get("epoch_seconds") if isinstance(report, dict) else None
            if isinstance(seconds, (int, float)):
                longest = max(longest or 0.0, float(seconds))
            on_report(report)
        if items:
            last = time.monotonic()
        elif not alive:
            break
        reason = limits.stalled(time.monotonic() - last, longest)
        if reason is not None:
            raise TrainingStalled(reason)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
