"""Stall limits and the background writer (no Ray); real sweeps whose fold workers or trial actor freeze."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from ferray.search._stall import StallLimits
from ferray.search.callbacks import BackgroundWriter, StallGuard
from ferray.testing import Freezer, processes_below


def test_startup_limit_applies_until_the_first_report():
    limits = StallLimits(startup_s=900, every_s=None, factor=5, min_s=300)
    assert limits.limit(None) == 900
    assert limits.limit(10.0) == 300  # 5 x 10 s is under the floor
    assert limits.limit(200.0) == 1000  # 5 x the longest epoch
    assert StallLimits(every_s=30).limit(200.0) == 30
    assert StallLimits(startup_s=60).driver_limit(None, margin_s=120) == 180


def test_spec_budget_sets_the_stall_limits(write_spec):
    from ferray.search import load_search_spec

    spec = load_search_spec(
        write_spec(
            "optim.lr: {type: float, low: 0.001, high: 0.01}",
            extra="",
            base=(
                "name: t\ndata: {source: 'synthetic:basic7?count=70'}\nfolds: {k: 2}\n"
                "model: {backbone: test_resnet}\nbudget: {trials: 2, max_epochs: 2, startup_timeout_s: 60, "
                "stall_timeout_s: 15}\n"
            ),
        )
    )
    limits = spec.budget.stall_limits()
    assert limits.limit(None) == 60 and limits.limit(1.0) == 15


def test_a_non_positive_stall_timeout_is_refused_with_its_key(write_spec):
    from ferray.errors import ConfigError
    from ferray.search import load_search_spec

    path = write_spec(
        "optim.lr: {type: float, low: 0.001, high: 0.01}",
        base=(
            "name: t\ndata: {source: 'synthetic:basic7?count=70'}\nfolds: {k: 2}\nmodel: {backbone: test_resnet}\n"
            "budget: {trials: 2, max_epochs: 2, stall_timeout_s: 0}\n"
        ),
    )
    with pytest.raises(ConfigError, match=r"budget\.stall_timeout_s"):
        load_search_spec(path)


def test_background_writer_runs_jobs_in_order_and_keeps_only_the_newest_of_a_key():
    writer = BackgroundWriter("test-writer")
    gate, seen = threading.Event(), []
    writer.submit(None, gate.wait)  # hold the thread so the next jobs queue up
    for i in range(5):
        writer.submit("table", lambda i=i: seen.append(("table", i)))
    writer.submit(None, lambda: seen.append(("other", 0)))
    gate.set()
    assert writer.flush(timeout=10)
    assert seen == [("table", 4), ("other", 0)]


def test_background_writer_survives_a_failing_job(caplog):
    writer = BackgroundWriter("test-writer-2")
    writer.submit("x", lambda: 1 / 0)
    done = []
    writer.submit("y", lambda: done.append(1))
    assert writer.flush(timeout=10) and done == [1]
    assert "failed" in caplog.text


def test_flush_is_bounded():
    writer = BackgroundWriter("test-writer-3")
    release = threading.Event()
    writer.submit(None, lambda: release.wait(5))
    start = time.monotonic()
    assert writer.flush(timeout=0.2) is False
    assert time.monotonic() - start < 2
    release.set()


# -- real sweeps whose processes freeze (SIGSTOP) --------------------------------------------------
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


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_a_trial_whose_workers_freeze_ends_stalled_and_resume_retries_it_from_its_checkpoint(tmp_path, monkeypatch):
    import ray

    from ferray.run.results import read_results
    from ferray.run.status import get_status
    from ferray.runtime.compat import local_ray_environment
    from ferray.search import run_search

    for key, value in local_ray_environment().items():  # as ferray starts Ray (one process less a trial)
        monkeypatch.setenv(key, value)

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

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        with Freezer() as freezer:
            freezer.watch(first_trial_workers, once=True)
            result = run_search(spec, run_dir=run, live=False, echo=lambda s: None)
    finally:
        ray.shutdown()
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

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        resumed = resume_search(run, retry_errored=True, live=False, echo=lambda s: None)
    finally:
        ray.shutdown()
    after = {t["trial_id"]: t for t in resumed.status["trials"]}
    assert after[victim]["state"] == "COMPLETED" and after[victim]["error"] is None, after[victim]
    epochs = [json.loads(line)["epoch"] for line in (run / victim / "epochs.jsonl").read_text().splitlines()]
    assert epochs.count(1) == 1 and sorted(set(epochs)) == [1, 2, 3, 4, 5], epochs


@pytest.mark.ray
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


@pytest.mark.ray
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
