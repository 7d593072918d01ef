"""One Tune trial: validate its config, fit its k-fold Ray Train trainer, forward the fold reports.

Why ferray does not use ``ray.tune.integration.ray_train.TuneReportCallback``: that callback
hands each report to the Tune actor's *main* thread through a one-slot queue, and the main
thread re-reports it into the session's one-slot result queue. When the trial function
returns, Tune's wrapper puts its end-of-trial marker into that same slot; if the last
epoch's report is still in flight, the main thread blocks forever on a full queue that only
it consumes (Ray 2.60, seen as a sweep stuck at RUNNING with nothing running).

Here the trial function itself is the only reporter: ``trainer.fit()`` runs on a helper
thread, the Train controller posts each rank-0 report to the sweep's :class:`ReportHub`
actor (:mod:`ferray.search._hub`), and the trial function's own thread takes them from the hub and calls
``ray.tune.report`` (public API). It returns only after ``fit`` has returned *and* every
report has been handed to Tune, so the end-of-trial marker always comes last.

The same loop is the stall watchdog: no report for :attr:`StallLimits.startup_s` before
the first epoch, or for :meth:`StallLimits.limit` afterwards, fails the trial with reason
``stalled`` (its actors and placement group are then freed by Tune and the reaper, and
``ferray resume --retry-errored`` continues it from its checkpoint).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ferray._io import atomic_write_text
from ferray.run.layout import TrialLayout
from ferray.search._hub import hub_call
from ferray.search._reaper import PlacementGroupReporter
from ferray.search._stall import StallLimits, TrialStalled
from ferray.training.watch import TrainingStalled, fit_watched

__all__ = ["ForwardReports", "trial_fn", "trial_name"]

logger = logging.getLogger(__name__)


def _forward_class():
    from ray.train import UserCallback

    class ForwardReports(UserCallback):
        """Runs in a trial's Train controller: posts rank 0's report of each epoch to the hub."""

        def __init__(self, hub, trial_id: str) -> None:
            self._hub = hub
            self._trial_id = trial_id

        def after_report(self, run_context, metrics, checkpoint):
            report = dict(metrics[0])
            if checkpoint is not None:
                report["checkpoint_path"] = checkpoint.path
            hub_call(self._hub.put, self._trial_id, report)

    return ForwardReports


ForwardReports = _forward_class()


def _boot_report(started_at: float) -> dict:
    """``trial_boot_s``: this trial process's own start before the trial function (Ray's worker, Tune's
    trainable, the function's arguments); empty when the process's start is unknown."""
    from ferray.training._worker import _process_started_at

    created = _process_started_at()
    return {"trial_boot_s": max(0.0, started_at - created)} if created is not None else {}


def trial_name(trial) -> str:
    """A trial's name and folder: its Tune id (works for a Trial and a trial's TuneContext)."""
    get = getattr(trial, "get_trial_id", None)
    return get() if get is not None else trial.trial_id


def trial_fn(
    config: dict,
    *,
    base: dict,
    shared: dict,
    plan: Any,
    resources: Any,
    experiment: str,
    stall: StallLimits,
    latency_at_start: bool = False,
) -> None:
    """One Tune trial (see the module docstring).

    ``latency_at_start``: fold 0 measures the fresh model's latency and reports it with every
    epoch (a latency objective ranks every rung by it); the trained model's is always
    measured after the last epoch.

    Checkpoints, prediction files, metrics and weights (and, on a local run, the epoch log) go
    straight to the trial's folder in the run directory or on the storage URI, not to Tune's
    per-session working directory: a resumed trial's Train run finds its last checkpoint there
    and continues from it.
    """
    started_at = time.time()  # the origin of the start-up the fold workers report
    import ray.tune

    from ferray.runtime.startup import use_train_environment
    from ferray.search._plan import trial_config
    from ferray.training import TrainingFailed, build_trainer, failure_reason

    use_train_environment()  # on a cluster this process has the node's environment, not the driver's
    cfg = trial_config(base, config)
    context = ray.tune.get_context()
    trial_id = trial_name(context)
    storage = f"{experiment.rstrip('/')}/{trial_id}"
    remote = "://" in experiment
    # With a storage URI too, the fold workers write the prediction files, metrics and weights
    # straight into the trial's folder (through pyarrow's filesystems): Tune's trial dir
    # (get_trial_dir) is local to the trial's node, uploaded only with SyncConfig(sync_artifacts=True),
    # and the fold workers that write the files run on other nodes.
    output_dir = storage
    if not remote:
        from ferray.run.trial_record import ended_history

        replay = ended_history(TrialLayout(storage))
        if replay is not None:
            # The retention policy cleaned this trial as ended (no checkpoints left); Tune restarts
            # it when the driver died before recording its end. Say its reports again and end.
            for report in replay:
                ray.tune.report(report)
            return
        import yaml

        atomic_write_text(TrialLayout(storage).config, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    else:
        import yaml

        atomic_write_text(
            f"{storage}/{TrialLayout.CONFIG}", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    hub = shared["hub"]
    callbacks = [ForwardReports(hub, trial_id), PlacementGroupReporter(hub, trial_id)]
    trainer = build_trainer(
        cfg,
        shared["data"],
        plan,
        resources,
        output_dir=output_dir,
        name="checkpoints",
        storage_path=storage,
        callbacks=callbacks,
        started_at=started_at,
        latency_at_start=latency_at_start,
    )

    def take(timeout: float) -> list:
        return hub_call(hub.take, trial_id, timeout)

    boot = _boot_report(started_at)

    def report(item: dict) -> None:
        if boot and isinstance(item, dict) and "startup_s" in item:  # the first epoch's, with the start-up
            item = {**item, **boot}
            boot.clear()
        ray.tune.report(item)

    try:
        fit_watched(trainer, take, report, stall)
    except TrainingStalled as exc:
        raise TrialStalled(f"{exc} (budget.stall_timeout_s / budget.startup_timeout_s)") from None
    except Exception as exc:  # Ray wraps the worker's error in several layers; keep its message
        raise TrainingFailed(failure_reason(exc)) from None
