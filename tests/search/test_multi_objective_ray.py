"""A real two-objective sweep (accuracy against latency): cost columns, a Pareto front, and a resume
after Ctrl-C that keeps the multi-objective study and the scheduler's rungs.

`ferray search` and `ferray resume` run as subprocesses that start their own local Ray with 2 CPUs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from _ray_helpers import ended_trials, ferray_cli, ferray_env, results_rows, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(900)]

SPEC = """\
name: mo
data: {source: "synthetic:basic7?count=280&size=48&seed=0"}
folds: {k: 2, seed: 0, holdout: 0.1}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.2, tta: []}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
  model.backbone: {type: categorical, choices: [test_resnet, test_efficientnet]}
budget: {trials: 4, max_epochs: 3, grace_period: 1, reduction_factor: 2, max_concurrent: 2}
search:
  seed: 0
  n_startup_trials: 2
  objectives: [{metric: accuracy, direction: max}, {metric: latency_ms, direction: min}]
"""


def _ferray(*args: str, log: Path):
    return ferray_cli(*args, "--no-finish", log=log, env=ferray_env(RAY_DEDUP_LOGS="0"))


def test_two_objective_sweep_reports_costs_marks_a_front_and_resumes_its_study(tmp_path):
    import optuna

    from ferray.run.status import get_status

    spec = tmp_path / "mo.yaml"
    spec.write_text(SPEC)
    run = tmp_path / "runs" / "mo"
    log = tmp_path / "log.txt"
    proc = _ferray(
        "search",
        str(spec),
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "mo",
        "--no-live",
        "--num-cpus",
        "2",
        log=log,
    )
    # Ctrl-C once a trial has ended: the resumed sweep must keep it, and the study's record of it.
    wait_for(proc, lambda: bool(ended_trials(run)), 400, "the first ended trial", log)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    before = ended_trials(run)
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{run / 'optuna.db'}")
    told = {t.user_attrs["tune_trial_id"]: (t.state.name, t.values) for t in study.trials if t.state.is_finished()}
    assert told

    proc = _ferray("resume", str(run), "--no-live", "--num-cpus", "2", log=log)
    assert proc.wait(timeout=700) == 0, log.read_text()[-4000:]
    assert "multi-objective ASHA" in log.read_text()

    # Every trial ended; the ones that ended before the interruption kept their rows.
    after = ended_trials(run)
    assert len(after) == 4 and all(after[t] == rows for t, rows in before.items())
    # Every epoch's row carries the cost the rungs ranked; the last row the trained model's latency.
    rows = [r for r in results_rows(run) if r["state"] in ("COMPLETED", "PRUNED")]
    assert all(r["params"] > 0 and r["macs"] > 0 and r["latency_ms"] > 0 for r in rows)
    finals = [r for r in rows if r["state"] == "COMPLETED" and r["epoch"] == 3]
    assert finals and all(r["latency_ms_b64"] > 0 and r["latency_threads"] >= 1 for r in finals)
    # The cost is the architecture's: one parameter and MAC count per backbone.
    assert all(
        len({(r["params"], r["macs"]) for r in rows if r["param.model.backbone"] == b}) == 1
        for b in {r["param.model.backbone"] for r in rows}
    )

    # One study, two directions, one Optuna trial per Tune trial; what it was told before stays.
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{run / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(after)
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for tid, (state, values) in told.items():
        assert by_tune[tid].state.name == state and by_tune[tid].values == values
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete and all(len(t.values) == 2 for t in complete)
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}

    # `ferray status` marks a non-empty Pareto front, every member an ended trial with both values.
    status = get_status(run, intervals=False)
    assert status["pareto"]
    by_id = {t["trial_id"]: t for t in status["trials"]}
    for tid in status["pareto"]:
        assert by_id[tid]["state"] in ("COMPLETED", "PRUNED")
        assert by_id[tid]["objectives"]["latency_ms"] > 0
    out = ferray_cli("status", str(run), log=tmp_path / "status.txt", env=ferray_env(COLUMNS="200"))
    assert out.wait(timeout=120) == 0
    assert "Pareto front over accuracy (max), latency_ms (min)" in (tmp_path / "status.txt").read_text()

    # The stages after the sweep see the front: an ensemble within a latency budget (members'
    # latency_ms x their fold models, summed) and a report that plots the front.
    import json

    from ferray.ensemble import build_ensembles
    from ferray.report import build_report

    costs = [2 * t["latency_ms"] for t in status["trials"] if t["state"] == "COMPLETED" and t.get("latency_ms")]
    budget = 2.5 * min(costs)
    ensemble = build_ensembles(run, top=4, methods=["greedy", "mean"], max_latency_ms=budget, echo=None)
    assert ensemble.summary["max_latency_ms"] == budget
    assert 0 < ensemble.summary["latency_ms"] <= budget
    assert all(m["fold_models"] == 2 for m in ensemble.summary["members"])
    page = build_report(run, out=tmp_path / "report")
    doc = json.loads((page.parent / "report.json").read_text())
    assert "pareto_front" in doc["figures"] and {p["trial_id"] for p in doc["front"]["points"] if p["pareto"]} == set(
        status["pareto"]
    )
