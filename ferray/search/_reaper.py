"""Free the fold workers' placement group of a trial that Tune stopped.

A Ray Train (V2) run reserves its fold workers' CPUs in a placement group created by its
controller actor. When Tune stops a trial early (ASHA) it ends the trial's actor; the
controller dies with it, but a placement group lives as long as its creator's *job* (the
sweep's driver). Train's own ``PlacementGroupCleaner`` finds dead controllers through
Ray's state API, and takes "not found" for dead: under load it freed the placement group
of a live trial, so ferray's trainers run without it (see
:func:`ferray.training._kfold._trainer_class`). Without any cleaner, every pruned trial
kept its workers' CPUs reserved, and the next trials waited for them forever (seen on 2
CPUs: the third and fourth trials of a sweep never started their workers).

So each trial's controller posts its placement group to the sweep's report hub
(:class:`PlacementGroupReporter`, a Train callback) and :class:`PlacementGroupReaper`
(a Tune callback on the driver) removes it when the trial ends, whatever way it ended.
"""

from __future__ import annotations

import logging

from ray.tune import Callback

from ferray.runtime.compat import WorkerGroupCallback, placement_group_of
from ferray.search._hub import PLACEMENT_GROUPS, hub_call

__all__ = ["PlacementGroupReporter", "PlacementGroupReaper"]

logger = logging.getLogger(__name__)


class PlacementGroupReporter(WorkerGroupCallback):
    """Runs in a trial's Train controller: posts ``(trial_id, placement_group)`` to the hub."""

    def __init__(self, hub, trial_id: str) -> None:
        self._hub = hub
        self._trial_id = trial_id

    def after_worker_group_start(self, worker_group) -> None:
        try:
            pg = placement_group_of(worker_group)
            if pg is not None:
                hub_call(self._hub.put, PLACEMENT_GROUPS, (self._trial_id, pg), timeout=30)
        except Exception as exc:  # noqa: BLE001 - best effort; never fail the trial for it
            logger.warning("could not report the placement group of trial %s: %s", self._trial_id, exc)


class PlacementGroupReaper(Callback):
    """On the driver: removes the fold workers' placement groups of trials that ended."""

    def __init__(self, hub) -> None:
        self._hub = hub
        self._groups: dict[str, list] = {}

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment; the hub and groups belong to this
        # Ray session only (a resumed sweep builds a new reaper).
        return {"_hub": None, "_groups": {}}

    def _drain(self) -> None:
        if self._hub is None:
            return
        try:
            items = hub_call(self._hub.take, PLACEMENT_GROUPS, 0.0, timeout=10)
        except Exception as exc:  # noqa: BLE001 - the hub is gone with the sweep
            logger.debug("could not read placement groups: %s", exc)
            items = []
        for trial_id, pg in items:
            self._groups.setdefault(trial_id, []).append(pg)

    def _reap(self, trial_id: str) -> None:
        from ray.util import placement_group_table, remove_placement_group

        self._drain()
        for pg in self._groups.pop(trial_id, []):
            try:
                if placement_group_table(pg).get("state") != "REMOVED":
                    remove_placement_group(pg)
            except Exception as exc:  # noqa: BLE001
                logger.warning("could not remove a placement group of trial %s: %s", trial_id, exc)

    def on_step_end(self, iteration, trials, **info):
        if iteration % 20 == 0:
            self._drain()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._reap(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._reap(trial.trial_id)

    def on_experiment_end(self, trials, **info):
        self._drain()
        for trial_id in list(self._groups):
            self._reap(trial_id)
