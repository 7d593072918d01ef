"""Warm starts end to end on a real local Ray (2 CPUs): `ferray search --warm-start` after a first sweep.

* other data: the first sweep's best configurations are enqueued; the new sweep's first trial is
  the first sweep's best, and results.parquet and `ferray status` say where it came from;
* the same data: the first sweep's finished trials seed the study; interrupted (Ctrl-C) and
  resumed, the sweep holds them once, and they never show as trials of the new run.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from _ray_helpers import FINAL_STATES, ferray_cli, ferray_env, results_rows, run_ferray, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(1800)]

SPEC = """\
name: warm
data: {source: "synthetic:basic7?count=140&size=48&seed=0"}
folds: {k: 2, seed: 0, holdout: 0.1}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.2, tta: []}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  loss.name: {type: categorical, choices: [ce, focal]}
budget: {trials: 3, max_epochs: 2, grace_period: 1, reduction_factor: 2, max_concurrent: 1}
search: {sampler: tpe, seed: 0, n_startup_trials: 2}
"""

OTHER_DATA = "synthetic:basic7?count=140&size=48&seed=1"


def _search(tmp: Path, name: str, *extra: str, timeout: float = 600):
    out = run_ferray(
        "search",
        str(tmp / "warm.yaml"),
        "--storage",
        str(tmp / "runs"),
        "--name",
        name,
        "--no-live",
        "--no-finish",
        "--num-cpus",
        "2",
        *extra,
        env=ferray_env(COLUMNS="200"),
        cwd=tmp,
        timeout=timeout,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return out


def _study(run: Path):
    import optuna

    return optuna.load_study(study_name="warm", storage=f"sqlite:///{run / 'optuna.db'}")


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("warm")
    (tmp / "warm.yaml").write_text(SPEC)
    _search(tmp, "first")
    return tmp


def test_other_data_enqueues_the_best_configuration_first(first):
    import optuna

    tmp = first
    out = _search(tmp, "other", "--data", OTHER_DATA, "--warm-start", str(tmp / "runs" / "first"))
    assert "other data (fingerprint" in out.stderr and "configurations are evaluated first" in out.stderr

    best = _study(tmp / "runs" / "first").best_trial
    rows = results_rows(tmp / "runs" / "other")
    trials = {r["trial_id"]: r for r in rows}
    assert len(trials) == 3 and {r["state"] for r in rows} <= set(FINAL_STATES)
    opening = min(trials.values(), key=lambda r: r["trial_number"])
    assert opening["origin"] == "enqueued:first"
    assert opening["param.optim.lr"] == pytest.approx(best.params["optim.lr"])
    assert opening["param.loss.name"] == best.params["loss.name"]
    # Every enqueued configuration ran once; the rest the sampler chose.
    study = _study(tmp / "runs" / "other")
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    enqueued = [r for r in trials.values() if r["origin"] == "enqueued:first"]
    completed_first = [t for t in _study(tmp / "runs" / "first").trials if t.state.name == "COMPLETE"]
    assert len(enqueued) == min(3, len(completed_first))
    assert {r["origin"] for r in trials.values()} <= {"enqueued:first", "cold"}

    status = run_ferray("status", str(tmp / "runs" / "other"), env=ferray_env(COLUMNS="200"), timeout=120)
    assert status.returncode == 0 and "enqueued:first" in status.stdout
    assert "configurations were evaluated first" in status.stdout


def test_same_data_seeds_the_study_once_across_an_interruption(first):
    import optuna

    tmp = first
    run = tmp / "runs" / "seeded"
    log = tmp / "seeded.log"
    source = [t for t in _study(tmp / "runs" / "first").trials if t.state.name in ("COMPLETE", "PRUNED")]
    proc = ferray_cli(
        "search",
        str(tmp / "warm.yaml"),
        "--storage",
        str(tmp / "runs"),
        "--name",
        "seeded",
        "--no-live",
        "--no-finish",
        "--num-cpus",
        "2",
        "--warm-start",
        str(tmp / "runs" / "first"),
        log=log,
        env=ferray_env(COLUMNS="200"),
    )
    wait_for(proc, lambda: any(r.get("epoch") for r in results_rows(run)), 400, "the first epoch", log)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=180) == 130, log.read_text()[-4000:]
    assert f"{len(source)} finished trials seed the sampler" in log.read_text()

    resumed = run_ferray("resume", str(run), "--no-live", "--no-finish", "--num-cpus", "2", cwd=tmp, timeout=600)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]

    study = _study(run)
    seeded = [t for t in study.trials if t.user_attrs.get("ferray_origin") == "seeded"]
    assert sorted(t.user_attrs["ferray_warm_key"] for t in seeded) == sorted(f"first#{t.number}" for t in source)
    for t in seeded:
        assert t.state.name in ("COMPLETE", "PRUNED") and t.intermediate_values
    ours = [t for t in study.trials if "tune_trial_id" in t.user_attrs]
    assert len(ours) == 3 and len(study.trials) == len(source) + 3
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)

    # The history is the study's, not the run's: three trials, each a configuration the sampler chose.
    rows = results_rows(run)
    assert len({r["trial_id"] for r in rows}) == 3 and {r["origin"] for r in rows} == {"cold"}
    from ferray.run.status import get_status

    status = get_status(run)
    assert len(status["trials"]) == 3 and sum(status["counts"].values()) == 3
    assert status["warm_start"]["sources"][0]["action"] == "seeded"
    assert status["warm_start"]["sources"][0]["trials"] == len(source)
