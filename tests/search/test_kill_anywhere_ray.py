"""Kill a whole `ferray search` process tree wherever it can land, resume, and compare with an uninterrupted run.

The kill points are the windows no other test covers: a trial's start-up before its first
report (the first trial's, before Tune has saved any state, and a later one's), the moment
between two trials, and the ensemble/export stage after the last trial. Each resumed run
must end as the uninterrupted one does: as many trials as the budget, none left RUNNING in
``results.parquet`` or the Optuna study, the same configurations with the same scores where
a trial trained from start to end within one process (training is seeded), and a finished
bundle. The uninterrupted run is also a short sweep's learning floor.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from _ray_helpers import ended_trials, ferray_cli, wait_for

from ferray.search._outcome import outcome_differences, sweep_outcome, trained_in_one_process
from ferray.testing import kill_tree

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

SPEC = """\
name: killed
data: {source: "synthetic:basic7?count=1400&size=48&seed=0&difficulty=0"}
folds: {k: 2, seed: 0, holdout: 0.15}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.0, tta: []}
run: {batch_size: 32, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 3.0e-3, high: 1.0e-2, log: true}
budget: {trials: 3, max_epochs: 5, early_stopping: false, max_concurrent: 1}
search: {sampler: random, seed: 0}
ensemble: {enabled: true, top_k: 3, methods: [greedy, mean], export: true}
distill: {enabled: false}
"""

#: The faces and model of tests/training/test_learning.py; FoldTrainer alone on 600-row folds
#: after 5 epochs: 0.46-0.48 at lr 3e-3, 0.32-0.48 at 1e-2 (chance 0.143).
SWEEP_FLOOR = 0.28


def _ferray(*args: str, log: Path) -> subprocess.Popen:
    return ferray_cli(*args, "--no-live", "--num-cpus", "2", log=log)


def _kill_when(proc: subprocess.Popen, condition, what: str, log: Path, timeout: float = 300) -> float:
    """SIGKILL the process tree as soon as ``condition()`` holds; the time of the kill."""
    wait_for(proc, condition, timeout, what, log, poll=0.05)
    kill_tree(proc)
    return time.time()


def _trial_dirs(run: Path) -> list[Path]:
    return sorted((p.parent for p in run.glob("*/config.yaml")), key=lambda p: p.stat().st_mtime)


def _starting(run: Path, before: int) -> bool:
    """A trial beyond the first ``before`` has begun (its trial function wrote its config) and has not
    reported an epoch."""
    dirs = _trial_dirs(run)
    return len(dirs) > before and not (dirs[-1] / "epochs.jsonl").exists()


def _ended(run: Path) -> set[str]:
    return set(ended_trials(run))


def test_a_sweep_killed_anywhere_resumes_to_what_an_uninterrupted_run_gives(tmp_path):
    spec = tmp_path / "killed.yaml"
    spec.write_text(SPEC)

    # The reference: the same sweep, never interrupted.
    log = tmp_path / "reference.txt"
    proc = _ferray("search", str(spec), "--storage", str(tmp_path / "reference"), "--name", "killed", log=log)
    assert proc.wait(timeout=500) == 0, log.read_text()[-5000:]
    reference = sweep_outcome(tmp_path / "reference" / "killed")
    assert len(reference.trials) == 3 and reference.bundle
    # A short sweep learns: its best trial's fold-mean accuracy is far above chance (1/7).
    best = max(t["metric"] for t in reference.trials.values())
    assert best > SWEEP_FLOOR, f"best fold-mean accuracy {best:.3f} below {SWEEP_FLOOR}"
    assert outcome_differences(reference, reference) == []

    run = tmp_path / "runs" / "killed"
    log = tmp_path / "killed.txt"
    kills: list[float] = [time.time()]

    # 1. During the first trial's start-up: Tune may not have saved any state yet.
    proc = _ferray("search", str(spec), "--storage", str(tmp_path / "runs"), "--name", "killed", log=log)
    kills.append(_kill_when(proc, lambda: _starting(run, 0), "the first trial's start", log))

    # 2. During a later trial's start-up, before its first report (the ghost of a RUNNING trial).
    proc = _ferray("resume", str(run), log=log)
    kills.append(
        _kill_when(
            proc, lambda: len(_ended(run)) >= 1 and _starting(run, 1), "a second trial's start after one ended", log
        )
    )

    # 3. Between two trials: as soon as one more trial has ended.
    proc = _ferray("resume", str(run), log=log)
    ended = len(_ended(run))
    kills.append(_kill_when(proc, lambda: len(_ended(run)) > ended, "another trial to end", log))

    # 4. In the ensemble/export stage, after the last trial.
    proc = _ferray("resume", str(run), log=log)
    kills.append(
        _kill_when(
            proc,
            lambda: (run / "ensemble").exists() or any(run.glob(".ensemble*")),
            "the ensemble stage",
            log,
            timeout=400,
        )
    )

    # 5. Resume to the end.
    proc = _ferray("resume", str(run), log=log)
    assert proc.wait(timeout=500) == 0, log.read_text()[-5000:]
    text = log.read_text()
    assert "UserWarning" not in text, "a Python warning reached the terminal instead of ferray.log"

    got = sweep_outcome(run)
    assert (run / "bundle" / "ensemble.onnx").is_file()
    same = trained_in_one_process(run, kills)
    assert same, "no trial trained start to end inside one process: the scores cannot be compared"
    assert outcome_differences(reference, got, compare_scores=same) == []
