"""Real sweeps whose fold workers or trial actor freeze (SIGSTOP): the stall limits end them.

The limits themselves, without Ray, are in ``test_stall.py``.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from _ray_helpers import start_local_ray

from ferray.search.callbacks import StallGuard
from ferray.testing import Freezer, processes_below

pytestmark = pytest.mark.ray

# Every process frozen here runs below this test's own process (the local Ray it started): other
# processes on the machine, another person's sweep among them, are never touched.

STALL_SPEC = """\
name: stall
data: {source: "synthetic:basic7?count=280&size=48&seed=0"}
folds: {k: 2, seed: 0, holdout: 0.1}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.0, tta: []}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
budget: {trials: 2, max_epochs: 5, early_stopping: false, max_concurrent: 1, stall_timeout_s: 20}
search: {sampler: random, seed: 0}
"""

#: Sweeps whose trials never report (``% (trials, startup_timeout_s)``).
SILENT_SPEC = STALL_SPEC.replace("count=280", "count=140").replace(
    "budget: {trials: 2, max_epochs: 5, early_stopping: false, max_concurrent: 1, stall_timeout_s: 20}",
    "budget: {trials: %d, max_epochs: 1, early_stopping: false, max_concurrent: 1, startup_timeout_s: %d}",
)


def _ours(*names: str):
    """Finds this test's own processes (below it) whose title names one of ``names``."""
    me = os.getpid()
    return lambda: processes_below(me, *names)


@pytest.mark.timeout(600)
def test_a_trial_whose_workers_freeze_ends_stalled_and_resume_retries_it_from_its_checkpoint(tmp_path):
    from ferray.run.results import read_results
    from ferray.run.status import get_status
    from ferray.search import run_search

    spec = tmp_path / "stall.yaml"
    spec.write_text(STALL_SPEC)
    run = tmp_path / "run"
    fold_workers = _ours("RayTrainWorker")

    def first_trial_workers() -> list[int]:
        # Once the driver has a trial's first epoch, its fold workers (max_concurrent 1: the only
        # ones) are frozen: they stop reporting.
        try:
            reported = any(r.get("epoch") for r in read_results(run / "results.parquet"))
        except (OSError, ValueError):
            return []
        return fold_workers() if reported else []

    # A local Ray as ferray starts one (one process less a trial), once for the sweep, once for the resume.
    with start_local_ray(), Freezer() as freezer:
        freezer.watch(first_trial_workers, once=True)
        result = run_search(spec, run_dir=run, live=False, echo=lambda s: None)
    assert freezer.frozen, "no fold worker was found to freeze"
    status = get_status(result.run_dir)
    states = {t["trial_id"]: t for t in status["trials"]}
    stalled = [t for t in states.values() if t["state"] == "ERROR"]
    assert len(stalled) == 1 and "stalled" in (stalled[0]["error"] or ""), states
    assert [t["state"] for t in states.values() if t is not stalled[0]] == ["COMPLETED"]
    victim = stalled[0]["trial_id"]
    rows = [r for r in read_results(result.results_path) if r["trial_id"] == victim]
    assert rows and max(r["epoch"] or 0 for r in rows) < 5

    # `ferray resume --retry-errored` continues the stalled trial from its last checkpoint.
    from ferray.search import resume_search

    with start_local_ray():
        resumed = resume_search(run, retry_errored=True, live=False, echo=lambda s: None)
    after = {t["trial_id"]: t for t in resumed.status["trials"]}
    assert after[victim]["state"] == "COMPLETED" and after[victim]["error"] is None, after[victim]
    epochs = [json.loads(line)["epoch"] for line in (run / victim / "epochs.jsonl").read_text().splitlines()]
    assert epochs.count(1) == 1 and sorted(set(epochs)) == [1, 2, 3, 4, 5], epochs


@pytest.mark.timeout(300)
def test_trials_that_never_send_their_first_report_end_stalled_at_the_startup_limit(tmp_path, local_ray):
    from ferray.run.status import get_status
    from ferray.search import run_search

    spec = tmp_path / "startup.yaml"
    spec.write_text(SILENT_SPEC % (2, 10))
    # Each trial's Train run hangs from its start: its controller and fold workers freeze as soon
    # as they exist (on a slow machine the limit may pass first; the outcome is the same). Only the
    # trial's own watchdog, in its actor (left running), can end it; the second trial starts only
    # once the first has ended and freed its resources (one at a time).
    with Freezer() as freezer:
        freezer.watch(_ours("TrainController", "RayTrainWorker"))
        result = run_search(spec, run_dir=tmp_path / "run", live=False, echo=lambda s: None)
    trials = get_status(result.run_dir)["trials"]
    assert [t["state"] for t in trials] == ["ERROR", "ERROR"], trials
    for trial in trials:
        silent = re.fullmatch(
            r"TrialStalled: stalled: no report from the workers for (\d+) s while waiting for the "
            r"first report \(limit 10 s\) \(budget\.stall_timeout_s / budget\.startup_timeout_s\)",
            trial["error"] or "",
        )
        assert silent, trial["error"]
        assert 10 <= int(silent[1]) <= 15


class _PromptGuard(StallGuard):
    """The driver's stall guard with a margin of seconds, not minutes (a test's patience)."""

    def __init__(self, limits, check_every_s: float = 0.5, margin_s: float = 3.0) -> None:
        super().__init__(limits, check_every_s=check_every_s, margin_s=margin_s)


@pytest.mark.timeout(300)
def test_the_driver_stops_a_trial_whose_own_actor_hangs(tmp_path, local_ray, monkeypatch):
    from ferray.run.status import get_status
    from ferray.search import run_search

    monkeypatch.setattr("ferray.search.callbacks.StallGuard", _PromptGuard)
    spec = tmp_path / "guard.yaml"
    spec.write_text(SILENT_SPEC % (1, 5))
    # The trial's own actor (Tune's ImplicitFunc running trial_fn) freezes as soon as it runs the
    # trial: its watchdog cannot fire, and only the driver-side guard can end the trial.
    with Freezer() as freezer:
        freezer.watch(_ours("ImplicitFunc.train"), once=True)
        result = run_search(spec, run_dir=tmp_path / "run", live=False, echo=lambda s: None)
    assert freezer.frozen, "the trial's actor was not found"
    (trial,) = get_status(result.run_dir)["trials"]
    assert trial["state"] == "ERROR", trial
    silent = re.fullmatch(
        r"stalled: the trial sent nothing for (\d+) s \(driver limit 8 s\); its actor was stopped", trial["error"] or ""
    )
    assert silent, trial["error"]
    assert 8 <= int(silent[1]) <= 12
