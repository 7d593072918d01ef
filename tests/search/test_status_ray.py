"""Intervals on the shared real sweep (``e2e_run``): status, the ensemble table and ``ferray evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def run(e2e_run):
    assert e2e_run.returncode == 0, e2e_run.output[-5000:]
    from ferray.run.layout import RunLayout

    return RunLayout(e2e_run.run_dir)


def test_status_shows_the_workers_holdout_interval_and_the_best_trials_oof_one(run, e2e_run):
    from ferray.metrics import bootstrap_metrics
    from ferray.run.predictions import read_predictions
    from ferray.run.status import get_status

    status = get_status(run.root)
    best = status["best"]
    trial = run.trial(best["trial_id"])
    written = json.loads(trial.metrics.read_text())["holdout_ci"]
    assert best["intervals"]["holdout"] == {**written, "source": "metrics.json"}
    oof = read_predictions(trial.oof)
    ci = bootstrap_metrics(oof.labels, oof.probs, num_classes=len(oof.class_names), seed=0)
    got = best["intervals"]["oof"]
    assert (got["accuracy"]["value"], got["accuracy"]["low"], got["accuracy"]["high"]) == pytest.approx(
        tuple(ci["accuracy"])
    )
    # `ferray search` printed the table with the intervals, and the ensemble's comparison under its table.
    assert "holdout acc [95% CI]" in e2e_run.stdout
    assert f"[{written['accuracy']['low']:.3f}, {written['accuracy']['high']:.3f}]" in e2e_run.stdout
    printed = " ".join(e2e_run.stdout.split())  # the ensemble's lines wrap at the console's width
    assert f"vs best single trial {best['trial_id']}: " in printed
    assert "accuracy (paired bootstrap, 1000 resamples): " in printed


def test_the_ensemble_table_and_summary_carry_intervals_and_the_comparison(run):
    summary = json.loads(run.ensemble_files.summary.read_text())
    comp = summary["comparison"]
    assert (
        comp["ensemble"] == summary["chosen"] and comp["baseline"] == summary["baseline"] == summary["top_members"][0]
    )
    for part in ("oof", "holdout"):
        ci = comp[part]["accuracy"]
        assert ci["low"] <= ci["value"] <= ci["high"]
        assert (ci["low"] > 0) == (ci["verdict"] == "a clear gain")
    for r in pq.read_table(run.ensemble_files.table).to_pylist():
        assert r["holdout_macro_f1_low"] <= r["holdout_macro_f1"] <= r["holdout_macro_f1_high"]


def test_evaluate_the_sweeps_bundle_on_data_with_a_class_it_lacks(run):
    from ferray.data import load_source
    from ferray.report import evaluate_bundle

    source = "synthetic:basic8?count=48&size=48&seed=5"
    ev = evaluate_bundle(run.root, source)
    data = load_source(source, size=48, channels=1)
    contempt = int(np.sum(data.labels == list(data.class_names).index("contempt")))
    assert ev.bundle == run.bundle and ev.excluded == {"contempt": contempt}
    assert ev.scored_rows == 48 - contempt and ev.accuracy.low <= ev.accuracy.value <= ev.accuracy.high
