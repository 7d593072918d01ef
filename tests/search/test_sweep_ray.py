"""End to end on a real local Ray (num_cpus=2): a tiny sweep, then every artefact it promises."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore")]

SPEC = """\
name: e2e
data: {source: "synthetic:basic7?count=280&size=48&seed=0"}
folds: {k: 2, seed: 0, holdout: 0.1}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.2, tta: []}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  loss.name: {type: categorical, choices: [ce, focal]}
  loss.focal_gamma: {type: float, low: 0.5, high: 3.0, when: {loss.name: focal}}
budget: {trials: 5, max_epochs: 3, grace_period: 1, reduction_factor: 2, max_concurrent: 2}
search: {sampler: tpe, seed: 0, n_startup_trials: 3}
tracking:
  wandb: {enabled: true, project: ferray-test, mode: offline}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    import ray

    from ferray.search import run_search

    root = tmp_path_factory.mktemp("sweep")
    spec = root / "e2e.yaml"
    spec.write_text(SPEC)
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield run_search(spec, run_dir=root / "run", live=False, echo=lambda s: None)
    finally:
        ray.shutdown()


def test_results_parquet_has_a_row_per_trial_per_epoch(sweep):
    from ferray.search import read_results

    rows = read_results(sweep.results_path)
    trials = {r["trial_id"] for r in rows}
    assert len(trials) == 5
    assert {r["state"] for r in rows} <= {"COMPLETED", "PRUNED", "ERROR"}
    for r in rows:
        if r["state"] != "ERROR":
            assert 1 <= r["epoch"] <= 3 and 0.0 <= r["metric"] <= 1.0 and r["val_accuracy_std"] >= 0
        assert ("param.loss.focal_gamma" in r and r["param.loss.focal_gamma"] is not None) == \
            (r["param.loss.name"] == "focal")
    completed = [r for r in rows if r["state"] == "COMPLETED"]
    assert completed and max(r["epoch"] for r in completed) == 3
    assert any(r.get("oof_accuracy") is not None for r in completed)


def test_asha_pruned_trials_are_pruned_in_optuna_with_intermediate_values(sweep):
    import optuna

    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{sweep.run_dir / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 5
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned, f"ASHA pruned nothing: {states}"
    assert complete
    for t in pruned:
        assert t.intermediate_values and max(t.intermediate_values) < 3
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2, 3] and t.value == t.intermediate_values[3]
    status_pruned = {t["trial_number"] for t in sweep.status["trials"] if t["state"] == "PRUNED"}
    assert status_pruned == {t.number for t in pruned}


def test_status_and_run_directory_layout(sweep):
    from ferray.search import get_status

    run = sweep.run_dir
    status = get_status(run)
    assert status["best"]["state"] == "COMPLETED" and status["best"]["params"]["optim.lr"] > 0
    assert sum(status["counts"].values()) == 5
    for name in ("spec.yaml", "folds.parquet", "optuna.db", "results.parquet"):
        assert (run / name).is_file(), name
    best_dir = run / status["best"]["trial_id"]
    assert (best_dir / "oof.parquet").is_file() and (best_dir / "metrics.json").is_file()
    assert any((best_dir / "checkpoints").rglob("fold_0.pt"))
    assert list(run.glob("experiment_state*.json")) or list(run.glob("tuner.pkl"))


def test_tensorboard_and_wandb_offline_files(sweep):
    events = list((sweep.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert len({p.relative_to(sweep.run_dir / "tensorboard").parts[0] for p in events}) == 5
    offline = list((sweep.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 5, offline
