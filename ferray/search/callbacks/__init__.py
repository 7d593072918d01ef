"""Tune callbacks that run on the sweep's driver, one per module.

They only observe (the stall guard excepted): a failure inside one (a full disk, a terminal
that went away) is logged and never stops the sweep. They run on Tune's event loop, so
file writes go to one background thread (:class:`BackgroundWriter`): a callback costs
microseconds, not the seconds a TensorBoard import or a Parquet write on a slow disk take.

==========================  ============================================================
``ResultsCallback``         ``results.parquet`` rewritten after every report and state
``RetentionCallback``       the run's retention policy, applied as trials end
``TensorBoardCallback``     one TensorBoard run per trial
``StallGuard``              stops a trial whose actor went silent
``LiveView``                the terminal panel: counts, best so far, ETA
``BackgroundWriter``        the thread the callbacks hand their file writes to
==========================  ============================================================
"""

# Exports load on first use: every callback imports Ray Tune.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "ResultsCallback": "ferray.search.callbacks._results",
    "RetentionCallback": "ferray.search.callbacks._retention",
    "TensorBoardCallback": "ferray.search.callbacks._tensorboard",
    "StallGuard": "ferray.search.callbacks._stall",
    "LiveView": "ferray.search.callbacks._live",
    "BackgroundWriter": "ferray.search.callbacks._writer",
    "background_writer": "ferray.search.callbacks._writer",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.search.callbacks._live import LiveView
    from ferray.search.callbacks._results import ResultsCallback
    from ferray.search.callbacks._retention import RetentionCallback
    from ferray.search.callbacks._stall import StallGuard
    from ferray.search.callbacks._tensorboard import TensorBoardCallback
    from ferray.search.callbacks._writer import BackgroundWriter, background_writer
