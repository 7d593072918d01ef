"""End to end on a real local Ray (2 CPUs): the shared `ferray search` run and every artefact it promises.

The run has 8 trials whose epochs take under a second: each trial's end used to be a chance
for Ray's end-of-trial report race to hang the sweep forever (see ferray.search._trial). The
sweep finishing, under the time limit, is the first assertion.
"""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(1200)]


def test_the_sweep_finishes_and_reports_every_trial(e2e_run):
    assert e2e_run.returncode == 0, e2e_run.output[-5000:]
    from ferray.run.status import get_status

    status = get_status(e2e_run.run_dir)
    assert sum(status["counts"].values()) == 8
    assert set(status["counts"]) <= {"COMPLETED", "PRUNED"}, status["counts"]


def test_results_parquet_has_a_row_per_trial_per_epoch(e2e_run):
    from ferray.run.results import read_results

    rows = read_results(e2e_run.run_dir / "results.parquet")
    assert len({r["trial_id"] for r in rows}) == 8
    assert {r["state"] for r in rows} <= {"COMPLETED", "PRUNED", "ERROR"}
    for r in rows:
        if r["state"] != "ERROR":
            assert 1 <= r["epoch"] <= 3 and 0.0 <= r["metric"] <= 1.0 and r["val_accuracy_std"] >= 0
        assert ("param.loss.focal_gamma" in r and r["param.loss.focal_gamma"] is not None) == (
            r["param.loss.name"] == "focal"
        )
    completed = [r for r in rows if r["state"] == "COMPLETED"]
    assert completed and max(r["epoch"] for r in completed) == 3
    assert any(r.get("oof_accuracy") is not None for r in completed)


def test_asha_pruned_trials_are_pruned_in_optuna_with_intermediate_values(e2e_run):
    import optuna

    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{e2e_run.run_dir / 'optuna.db'}")
    assert len(study.trials) == 8
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned, [t.state for t in study.trials]
    assert complete
    for t in pruned:
        assert t.intermediate_values and max(t.intermediate_values) < 3
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2, 3] and t.value == t.intermediate_values[3]
    from ferray.run.status import get_status

    status_pruned = {t["trial_number"] for t in get_status(e2e_run.run_dir)["trials"] if t["state"] == "PRUNED"}
    assert status_pruned == {t.number for t in pruned}


def test_run_directory_layout(e2e_run):
    from ferray.run.layout import RunLayout
    from ferray.run.status import get_status

    run = RunLayout(e2e_run.run_dir)
    best = get_status(run.root)["best"]
    assert best["state"] == "COMPLETED" and best["params"]["optim.lr"] > 0
    for path in (run.spec, run.folds, run.study, run.results, run.manifest, run.log):
        assert path.is_file(), path
    trial = run.trial(best["trial_id"])
    for path in (
        trial.config,
        trial.oof,
        trial.holdout,
        trial.metrics,
        trial.epochs,
        trial.weights(0),
        trial.weights(1),
    ):
        assert path.is_file(), path
    assert list(run.root.glob("experiment_state*.json")) or list(run.root.glob("tuner.pkl"))


def test_tensorboard_and_wandb_offline_files(e2e_run):
    run = e2e_run.run_dir
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert len({p.relative_to(run / "tensorboard").parts[0] for p in events}) == 8
    assert len(list((run / "wandb").glob("offline-run-*"))) == 8


def test_output_in_a_pipe_is_ferrays_own(e2e_run):
    out = e2e_run.output
    for noise in (
        "Token authentication",
        "PreemptionWatcher",
        "SweepGenerator",
        "PruningASHA",
        "worker processes have been started",
        "/tmp/ray/session",
        "A new study created",
        "(raylet)",
    ):
        assert noise not in out, f"{noise!r} in the output:\n{out[-4000:]}"
    run = e2e_run.run_dir
    assert f"tensorboard --logdir {run / 'tensorboard'}" in out
    assert f"optuna-dashboard sqlite:///{run / 'optuna.db'}" in out
    assert f"logs: {run / 'ferray.log'}" in out
    ray_lines = (run / "ferray.log").read_text()
    assert "WARNING" in ray_lines or "ERROR" in ray_lines  # Ray's own lines went to the log


def test_the_summary_names_the_best_trial_and_the_bundle(e2e_run):
    out = e2e_run.stdout
    assert re.search(r"trials: \d+ completed", out) and "best: trial" in out
    assert f"bundle: {e2e_run.run_dir / 'bundle'}" in out


def test_ended_trials_keep_only_what_later_stages_need(e2e_run):
    from ferray.run.layout import RunLayout
    from ferray.run.status import get_status

    run = RunLayout(e2e_run.run_dir)
    status = get_status(run.root, disk=True)
    completed = [t["trial_id"] for t in status["trials"] if t["state"] == "COMPLETED" and t["metric"] is not None]
    members = {
        m["trial_id"] if isinstance(m, dict) else m
        for m in __import__("json").loads(run.ensemble_files.summary.read_text())["members"]
    }
    for t in status["trials"]:
        trial = run.trial(t["trial_id"])
        assert len(trial.checkpoint_epochs()) <= 1
        if t["state"] in ("COMPLETED", "PRUNED"):
            assert not trial.checkpoint_epochs(), t["trial_id"]
        if t["state"] == "PRUNED":
            assert not trial.weights_dir.exists()
        if t["state"] == "COMPLETED":
            assert trial.oof.is_file() and trial.holdout.is_file()
            assert trial.weights_dir.is_dir() == (t["trial_id"] in completed[:5] or t["trial_id"] in members)
    assert status["disk"]["removed_bytes"] > 0


def test_fold_workers_import_nothing_they_do_not_use(e2e_run):
    from ferray.run.results import read_results

    first = [r for r in read_results(e2e_run.run_dir / "results.parquet") if r.get("epoch") == 1]
    assert first and all(r.get("heavy_modules") == [] for r in first), [r.get("heavy_modules") for r in first]
    assert all(r.get("startup_s") and r["startup_s"] > 0 for r in first)
