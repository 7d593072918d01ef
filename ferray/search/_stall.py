"""Stall limits: how long a trial may go without a report before it is failed as ``stalled``.

Two guards use them. The trial function itself (:mod:`ferray.search._trial`) fails its
trial when its fold workers go quiet; a driver-side callback
(:class:`ferray.search._callbacks.StallGuard`) stops a trial whose own actor stopped
answering (it waits a margin longer, so the trial's own guard normally fires first).
"""

from __future__ import annotations

from dataclasses import dataclass

from ferray.errors import FerrayError

__all__ = ["StallLimits", "TrialStalled", "STALLED"]

#: First word of a stalled trial's error reason.
STALLED = "stalled"


class TrialStalled(FerrayError):
    """A trial's fold workers stopped reporting for longer than the stall limit."""


@dataclass(frozen=True)
class StallLimits:
    """How long a trial may go without a report before it is failed as ``stalled``.

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
        """The driver-side guard's limit: the trial's own limit plus a margin."""
        return self.limit(longest_epoch_s) + margin_s
