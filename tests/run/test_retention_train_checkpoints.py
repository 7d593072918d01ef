"""Ray Train's own checkpoint bookkeeping under the retention policy (no Ray cluster started).

Ray Train's ``CheckpointManager`` is what registers a trial's epoch checkpoints, deletes old
ones (``CheckpointConfig(num_to_keep=1)``) and, when a trial restarts, hands the workers the
latest checkpoint. These tests drive the real class on a trial folder: a kill during a
checkpoint copy leaves the previous epoch to resume from, and the policy's cleaning of an
errored trial leaves a list that a restarted Train run loads.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("ray.train.v2._internal.execution.checkpoint.checkpoint_manager")

from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.results import ResultsTable
from ferray.run.retention import apply_retention
from ferray.training.checkpoint import load_fold_state, save_fold_state

SPEC = """\
name: t
data: {source: "synthetic:basic7?count=70&size=48&seed=0"}
folds: {k: 2}
model: {backbone: test_resnet, pretrained: false}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
"""
K = 2


def _run_with_trial(tmp_path: Path, trial_id: str) -> tuple[RunLayout, TrialLayout]:
    """A run folder with its spec and one (empty) trial folder."""
    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    run.spec.write_text(SPEC)
    trial = run.trial(trial_id)
    trial.root.mkdir()
    return run, trial


def _manager(trial: TrialLayout, num_to_keep: int = 1):
    """Train's checkpoint manager of a trial's Train run, as a (re)started run builds it."""
    from ray.train import CheckpointConfig
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (
        CheckpointManager,
    )
    from ray.train.v2._internal.execution.context import StorageContext

    storage = StorageContext(storage_path=str(trial.root), experiment_dir_name=TrialLayout.CHECKPOINTS)
    # The same setting as ferray.training.build_trainer.
    return CheckpointManager(CheckpointConfig(num_to_keep=num_to_keep), storage)


def _write_epoch(trial: TrialLayout, epoch: int, history: list[dict], folds=range(K)) -> Path:
    folder = trial.checkpoints / f"epoch_{epoch:04d}"
    for fold in folds:
        state = {"trainer": {"epoch": epoch}, "history": history, "best": 0.5, "best_epoch": epoch, "since_best": 0}
        save_fold_state(state, trial.fold_checkpoint(folder, fold))
    return folder


def _register(manager, folder: Path, metrics: dict) -> None:
    from ray.train import Checkpoint
    from ray.train.v2._internal.execution.training_report import _TrainingReport

    async def run():
        manager.register_checkpoint(
            _TrainingReport(checkpoint=Checkpoint(path=str(folder)), metrics=metrics, validation=False)
        )

    asyncio.run(run())


def _train(trial: TrialLayout, epochs: int, *, watch=None, num_to_keep: int = 1) -> list[dict]:
    manager = _manager(trial, num_to_keep)
    if watch is not None:
        watch(manager)
    history = []
    for epoch in range(1, epochs + 1):
        history.append({"epoch": epoch, "metric": 0.1 * epoch, "final": False})
        _register(manager, _write_epoch(trial, epoch, list(history)), history[-1])
    return history


def test_one_checkpoint_kept_and_the_previous_stays_until_the_new_one_is_listed(tmp_path):
    trial = TrialLayout(tmp_path / "t1")
    seen = []

    def watch(manager):
        write = manager._write_state_to_storage

        def spy():
            write()  # Train's list now names the new checkpoint ...
            doc = json.loads((trial.checkpoints / "checkpoint_manager_snapshot.json").read_text())
            seen.append(
                (
                    [r["checkpoint_dir_name"] for r in doc["checkpoint_results"]],
                    sorted(p.name for p in trial.checkpoint_epochs()),
                )
            )  # ... and the old one still exists

        manager._write_state_to_storage = spy

    _train(trial, 3, watch=watch)
    assert seen == [
        (["epoch_0001"], ["epoch_0001"]),
        (["epoch_0002"], ["epoch_0001", "epoch_0002"]),
        (["epoch_0003"], ["epoch_0002", "epoch_0003"]),
    ]
    assert [p.name for p in trial.checkpoint_epochs()] == ["epoch_0003"]


def test_a_kill_during_a_checkpoint_copy_resumes_from_the_last_complete_epoch(tmp_path):
    run, trial = _run_with_trial(tmp_path, "e1")
    history = _train(trial, 2)
    # Epoch 3's copy is cut short: fold 0's file torn, fold 1's never written, nothing registered.
    torn = _write_epoch(trial, 3, history, folds=[0])
    path = trial.fold_checkpoint(torn, 0)
    path.write_bytes(path.read_bytes()[:20])
    table = ResultsTable()
    table.add_result("e1", {}, {"epoch": 2, "metric": 0.2})
    table.set_state("e1", "ERROR", error="TrialStalled: stalled")
    table.write(run.results)

    # The policy keeps the last complete checkpoint of the errored trial and drops the torn copy.
    report = apply_retention(run.root)
    assert [p.name for p in trial.checkpoint_epochs()] == ["epoch_0002"]
    assert [t.trial_id for t in report.trials] == ["e1"]

    # A restarted Train run (`ferray resume --retry-errored`) loads the list and continues from epoch 2.
    restarted = _manager(trial)
    latest = Path(restarted.latest_checkpoint_result.checkpoint.path)
    assert latest.name == "epoch_0002"
    for fold in range(K):
        assert load_fold_state(trial.fold_checkpoint(latest, fold))["trainer"]["epoch"] == 2


def test_an_older_runs_errored_trial_is_trimmed_to_a_list_train_loads(tmp_path):
    run, trial = _run_with_trial(tmp_path, "e1")
    _train(trial, 3, num_to_keep=2)  # before this policy: two epochs kept
    table = ResultsTable()
    table.add_result("e1", {}, {"epoch": 3, "metric": 0.3})
    table.set_state("e1", "ERROR", error="TrainingFailed: boom")
    table.write(run.results)
    apply_retention(run.root)
    assert [p.name for p in trial.checkpoint_epochs()] == ["epoch_0003"]
    restarted = _manager(trial)  # raises when its list names a folder that is gone
    assert Path(restarted.latest_checkpoint_result.checkpoint.path).name == "epoch_0003"


def test_cleaned_completed_trial_leaves_no_list_for_train_to_trip_on(tmp_path):
    from ferray.run.trial_record import ended_history

    run, trial = _run_with_trial(tmp_path, "c1")
    _train(trial, 2)
    table = ResultsTable()
    table.add_result("c1", {}, {"epoch": 2, "metric": 0.2, "final": True})
    table.set_state("c1", "COMPLETED")
    table.write(run.results)
    # A completed trial without weights files (a run from before they existed): the last
    # checkpoint is its only copy of the model, so it stays.
    apply_retention(run.root)
    assert [p.name for p in trial.checkpoint_epochs()] == ["epoch_0002"]
    trial.weights_dir.mkdir()
    for fold in range(K):
        trial.weights(fold).write_bytes(b"{}")
    apply_retention(run.root)
    assert not trial.checkpoints.exists()
    # Tune restarting it (a driver that died before recording its end) replays, never trains.
    assert [r["epoch"] for r in ended_history(trial)] == [1, 2]
