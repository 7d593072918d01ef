"""Stall limits of a sweep's trials (see :mod:`ferray.training.watch`).

Two guards use them. The trial function itself (:mod:`ferray.search._trial`) fails its
trial when its fold workers go quiet; a driver-side callback
(:class:`ferray.search.callbacks.StallGuard`) stops a trial whose own actor stopped
answering (it waits a margin longer, so the trial's own guard normally fires first).
"""

from __future__ import annotations

from ferray.training.watch import STALLED, StallLimits, TrainingStalled

__all__ = ["StallLimits", "TrialStalled", "STALLED"]


class TrialStalled(TrainingStalled):
    """A trial's fold workers stopped reporting for longer than the stall limit."""
