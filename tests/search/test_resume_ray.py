"""Interrupt real sweeps (SIGINT, SIGKILL of the whole process tree, a killed fold worker), then resume.

Every process here is real: `ferray search` / `ferray resume` / `ferray train` run as
subprocesses that start their own local Ray with 2 CPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from _ray_helpers import FINAL_STATES, ended_trials, ferray_cli, ferray_env, results_rows, wait_for

from ferray.testing import kill_tree

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(900)]

SPEC = """\
name: resume
data: {source: "synthetic:basic7?count=280&size=48&seed=0"}
folds: {k: 2, seed: 0, holdout: 0.1}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.2, tta: []}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  loss.name: {type: categorical, choices: [ce, focal]}
budget: {trials: 4, max_epochs: 4, grace_period: 1, reduction_factor: 2, max_concurrent: 2}
search: {sampler: tpe, seed: 0, n_startup_trials: 2}
"""


def _ferray(*args: str, log: Path) -> subprocess.Popen:
    # The interruption contract is about the trials; the stages after them have their own tests.
    extra = ["--no-finish"] if args[0] in ("search", "resume") else []
    return ferray_cli(*args, *extra, log=log, env=ferray_env(RAY_DEDUP_LOGS="0"))


def _timed_ledger(run: Path) -> list[tuple[str, int, float]]:
    """(trial, epoch, time) for every epoch any fold-worker group trained, recomputations included."""
    out = []
    for path in run.glob("*/epochs.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out.append((path.parent.name, d["epoch"], d["time"]))
    return out


def _ledger(run: Path) -> list[tuple[str, int]]:
    """(trial, epoch) for every epoch any fold-worker group trained, recomputations included."""
    return [(t, e) for t, e, _ in _timed_ledger(run)]


def _retrained(ledger: list[tuple[str, int, float]], stops: list[float]) -> list[str]:
    """Epochs trained again after an interruption other than the one each trial had in flight.

    The design's promise: an interruption costs a running trial at most the epoch it was
    training or checkpointing, i.e. only its last epoch before the stop may be trained again.
    """
    bad = []
    for i, stop in enumerate(stops):
        until = stops[i + 1] if i + 1 < len(stops) else float("inf")
        before: dict[str, set[int]] = {}
        for trial, epoch, at in ledger:
            if at < stop:
                before.setdefault(trial, set()).add(epoch)
        for trial, epoch, at in ledger:
            if stop < at < until and epoch in before.get(trial, ()) and epoch != max(before[trial]):
                bad.append(f"{trial} epoch {epoch} trained again after interruption {i + 1}")
    return bad


def _checkpoints(run: Path) -> set[str]:
    """Every epoch checkpoint folder now in the run (one per running trial: Train keeps one, and the
    retention policy removes ended trials'), so a new one shows as a new name, not a higher count."""
    return {str(p.relative_to(run)) for p in run.glob("*/checkpoints/epoch_*")}


def test_interrupted_sweep_resumes_to_the_same_contract(tmp_path):
    import optuna

    spec = tmp_path / "resume.yaml"
    spec.write_text(SPEC)
    run = tmp_path / "runs" / "resume"
    log = tmp_path / "log.txt"
    frozen: dict[str, list[dict]] = {}
    in_flight = 0
    stops: list[float] = []

    def snapshot():
        for tid, rows in ended_trials(run).items():
            frozen.setdefault(tid, rows)

    # 1. Ctrl-C during the first trial: a clean stop that names the resume command.
    proc = _ferray(
        "search",
        str(spec),
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "resume",
        "--no-live",
        "--num-cpus",
        "2",
        log=log,
    )
    wait_for(proc, lambda: len(_ledger(run)) >= 1, 240, "the first epoch", log)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    stops.append(time.time())
    assert f"ferray resume {run}" in log.read_text()
    in_flight += 2  # each interruption may cost the two running trials their epoch in flight
    snapshot()

    # 2. SIGKILL the whole tree right after a new epoch checkpoint appears (mid checkpoint write).
    proc = _ferray("resume", str(run), "--no-live", "--num-cpus", "2", log=log)
    seen = _checkpoints(run)
    wait_for(proc, lambda: bool(_checkpoints(run) - seen), 240, "a new checkpoint", log)
    in_flight += 2
    kill_tree(proc)
    stops.append(time.time())
    snapshot()

    # 3. SIGKILL during a trial: an epoch into the resumed sweep. (A kill between trials, and at
    # the other moments of a sweep's life, is test_kill_anywhere_ray's.)
    proc = _ferray("resume", str(run), "--no-live", "--num-cpus", "2", log=log)
    trained = len(_ledger(run))
    wait_for(proc, lambda: len(_ledger(run)) > trained, 240, "an epoch after resuming", log)
    in_flight += 2
    kill_tree(proc)
    stops.append(time.time())
    snapshot()

    # 4. Resume to the end.
    proc = _ferray("resume", str(run), "--no-live", "--num-cpus", "2", log=log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-5000:]

    rows = results_rows(run)
    trials = {r["trial_id"] for r in rows}
    assert len(trials) == 4, sorted(trials)
    assert {r["state"] for r in rows} <= set(FINAL_STATES)
    epochs = Counter((r["trial_id"], r["epoch"]) for r in rows)
    assert max(epochs.values()) == 1, "an epoch row is duplicated"
    # Trials that had ended before an interruption are untouched, row for row.
    final = ended_trials(run)
    for tid, before in frozen.items():
        assert final[tid] == before, tid
    # Optuna: one trial per Tune trial, in the matching state.
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{run / 'optuna.db'}")
    by_tune = {t.user_attrs.get("tune_trial_id"): t for t in study.trials}
    assert len(study.trials) == 4 and set(by_tune) == trials
    expect = {"COMPLETED": "COMPLETE", "PRUNED": "PRUNED", "ERROR": "FAIL"}
    for r in rows:
        assert by_tune[r["trial_id"]].state.name == expect[r["state"]], r["trial_id"]
    # Work lost: only epochs in flight at an interruption (2 trials at once) are trained
    # twice; none is skipped, and every trial's epochs are in results.parquet from 1 on.
    ledger = _ledger(run)
    recomputed = len(ledger) - len(set(ledger))
    assert recomputed <= in_flight, (recomputed, in_flight)
    assert _retrained(_timed_ledger(run), stops) == []
    assert set(epochs) <= set(ledger)
    for tid in trials:
        got = sorted(e for t, e in epochs if t == tid)
        assert got == list(range(1, len(got) + 1)), (tid, got)
    state = json.loads((run / "ferray_run.json").read_text())
    assert state["trials"] == 4


def test_extend_and_retry_errored_on_a_finished_sweep(tmp_path):
    import optuna

    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.replace("trials: 4", "trials: 2").replace("max_epochs: 4", "max_epochs: 3"))
    run = tmp_path / "runs" / "small"
    log = tmp_path / "log.txt"
    proc = _ferray(
        "search",
        str(spec),
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "small",
        "--no-live",
        "--num-cpus",
        "2",
        log=log,
    )
    # A fold worker dies (resources.max_failures is 0): its trial errors, the sweep goes on.
    wait_for(proc, lambda: bool(_ledger(run)), 240, "the first epoch", log)
    victim_trial = _ledger(run)[0][0]
    pid = json.loads((run / victim_trial / "epochs.jsonl").read_text().splitlines()[0])["pid"]
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
    rows = results_rows(run)
    assert {r["state"] for r in rows if r["trial_id"] == victim_trial} == {"ERROR"}
    before = {t: r for t, r in ended_trials(run).items() if t != victim_trial}

    proc = _ferray("resume", str(run), "--extend", "1", "--retry-errored", "--no-live", "--num-cpus", "2", log=log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
    after = ended_trials(run)
    assert len(after) == 3 and all(after[t] == r for t, r in before.items())
    assert {r["state"] for r in after[victim_trial]} <= {"COMPLETED", "PRUNED"}
    assert all(r.get("error") is None for r in after[victim_trial])
    assert json.loads((run / "ferray_run.json").read_text())["trials"] == 3
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{run / 'optuna.db'}")
    victims = [t for t in study.trials if t.user_attrs.get("tune_trial_id") == victim_trial]
    # The failed attempt keeps its record; the retry has its own, ended, naming it.
    assert [t.state.name for t in victims][0] == "FAIL" and len(victims) == 2
    assert victims[-1].user_attrs.get("retry_of") == victims[0].number
    assert victims[-1].state.name in {"COMPLETE", "PRUNED"}
    assert len(study.trials) == 4  # 3 Tune trials + the failed attempt's record


def test_a_killed_fold_worker_resumes_from_its_checkpoint(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        'data: {source: "synthetic:basic7?count=280&size=48&seed=0"}\n'
        "folds: {k: 2, holdout: none}\nmodel: {backbone: test_resnet}\naugment: {tta: []}\n"
        "run: {epochs: 4, batch_size: 32}\nresources: {max_failures: 1}\n"
    )
    out = tmp_path / "out"
    log = tmp_path / "log.txt"
    proc = _ferray("train", str(cfg), "--output", str(out), "--num-cpus", "2", log=log)
    ledger = out / "epochs.jsonl"

    def lines():
        return [json.loads(x) for x in ledger.read_text().splitlines()] if ledger.exists() else []

    def registered() -> str:
        """The latest checkpoint Train has registered ('' before the first)."""
        from ferray.runtime.compat import TRAIN_SNAPSHOT, read_train_snapshot, snapshot_checkpoints

        doc = read_train_snapshot(out / "checkpoints" / TRAIN_SNAPSHOT)
        return (snapshot_checkpoints(doc)[1] or "") if doc else ""

    # Kill a fold worker once Train has registered epoch 1's checkpoint: the restarted workers
    # must continue from it, not train epoch 1 again.
    wait_for(proc, lambda: registered() >= "epoch_0001" and len(lines()) >= 1, 240, "epoch 1's checkpoint", log)
    victim = lines()[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=400) == 0, log.read_text()[-4000:]
    done = lines()
    epochs = [d["epoch"] for d in done]
    assert epochs[-1] == 4
    assert {d["pid"] for d in done} != {victim}, "no new worker took over"
    assert epochs.count(1) == 1, f"epoch 1 was trained again after its checkpoint: {epochs}"
    assert sorted(set(epochs)) == [1, 2, 3, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and (out / "oof.parquet").is_file()
