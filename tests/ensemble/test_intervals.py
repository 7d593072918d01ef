"""Bootstrap intervals in the ensemble table and the paired comparison with the best single trial."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ferray.ensemble import build_ensembles
from ferray.ensemble._build import comparison_lines, verdict
from ferray.metrics import bootstrap_metrics, paired_bootstrap
from ferray.run.predictions import read_predictions

from .conftest import CLASSES, TrialSpec

CI_KEYS = [f"{part}_{m}" for part in ("oof", "holdout") for m in ("accuracy", "macro_f1")]


def _triple(row: dict, key: str) -> tuple:
    return row[key], row[f"{key}_low"], row[f"{key}_high"]


def _sorted(pred):
    order = np.argsort(pred.rows, kind="stable")
    return pred.labels[order], pred.probs[order].astype(np.float64)


def test_every_row_has_intervals_and_the_chosen_ones_are_its_predictions_bootstrap(make_run):
    run = make_run()
    report = build_ensembles(run.root, top=4, methods=["mean", "vote"], echo=None)
    for r in report.table:
        for key in CI_KEYS:
            assert r[f"{key}_low"] <= r[key] <= r[f"{key}_high"] and r[f"{key}_low"] < r[f"{key}_high"], (r, key)

    # The chosen method's written predictions give the same intervals (mean: vote's float64
    # tie-break nudge does not survive the float32 file).
    report = build_ensembles(run.root, top=4, methods=["mean"], echo=None)
    files = run.layout.ensemble_files
    y, probs = _sorted(read_predictions(files.oof))
    ci = bootstrap_metrics(y, probs, num_classes=len(CLASSES), seed=0)
    row = report.row(report.chosen)
    assert _triple(row, "oof_accuracy") == pytest.approx(tuple(ci["accuracy"]))
    assert _triple(row, "oof_macro_f1") == pytest.approx(tuple(ci["macro_f1"]))
    y, probs = _sorted(read_predictions(run.layout.trial("t_b").oof))
    ci = bootstrap_metrics(y, probs, num_classes=len(CLASSES), seed=0)
    assert _triple(report.row("t_b"), "oof_macro_f1") == pytest.approx(tuple(ci["macro_f1"]))

    table = {r["name"]: r for r in pq.read_table(files.table).to_pylist()}
    summary = json.loads(files.summary.read_text())
    for key in CI_KEYS:
        assert table["t_a"][f"{key}_low"] == report.row("t_a")[f"{key}_low"]
        assert summary["methods"]["mean"][f"{key}_high"] == report.row("mean")[f"{key}_high"]
        assert summary["members"][0][f"{key}_low"] == report.row("t_a")[f"{key}_low"]


def test_chosen_against_best_single_is_a_paired_bootstrap_and_a_clear_gain_here(make_run):
    from rich.console import Console

    run = make_run()  # two experts on different classes: together they beat the best single trial clearly
    report = build_ensembles(run.root, top=4, methods=["mean"], echo=None)
    comp = report.comparison
    assert comp["ensemble"] == report.chosen and comp["baseline"] == "t_a" == report.members[0]
    assert json.loads(run.layout.ensemble_files.summary.read_text())["comparison"] == comp

    for part, file in (("oof", "oof"), ("holdout", "holdout")):
        y, ens = _sorted(read_predictions(getattr(run.layout.ensemble_files, file)))
        member = read_predictions(getattr(run.layout.trial("t_a"), file))
        rows, inverse = np.unique(member.rows, return_inverse=True)  # holdout: the mean of the fold models
        single = np.zeros((len(rows), len(CLASSES)))
        np.add.at(single, inverse, member.probs.astype(np.float64))
        for metric in ("accuracy", "macro_f1"):
            expected = paired_bootstrap(y, ens, single, metric=metric, num_classes=len(CLASSES), seed=0)
            got = comp[part][metric]
            assert (got["value"], got["low"], got["high"]) == pytest.approx(tuple(expected))
            assert got["low"] > 0 and got["verdict"] == "a clear gain"

    console = Console(record=True, width=240)
    console.print(report.render())
    text = console.export_text()
    acc = comp["holdout"]["accuracy"]
    assert (
        f"chosen {report.chosen} vs best single trial t_a: {100 * acc['value']:+.1f} points "
        f"[{100 * acc['low']:+.1f}, {100 * acc['high']:+.1f}] holdout accuracy (paired bootstrap, 1000 "
        "resamples): a clear gain"
    ) in text
    assert "OOF accuracy (paired bootstrap" in text
    low = report.row("t_a")["oof_accuracy_low"]
    assert f"[{low:.3f}, " in text

    again = build_ensembles(run.root, top=4, methods=["mean"], echo=None)
    assert again.comparison == comp  # seeded


def test_an_ensemble_identical_to_the_best_trial_differs_by_exactly_zero(make_run):
    run = make_run([TrialSpec("t_a", metric=0.7), TrialSpec("t_b", metric=0.6)])
    report = build_ensembles(run.root, top=1, methods=["mean"], echo=None)
    for part in ("oof", "holdout"):
        for metric in ("accuracy", "macro_f1"):
            assert report.comparison[part][metric] == {
                "value": 0.0,
                "low": 0.0,
                "high": 0.0,
                "verdict": "no difference (the same rows right and wrong)",
            }


def test_without_holdout_rows_only_the_oof_comparison(make_run):
    report = build_ensembles(make_run(n_holdout=0).root, top=2, methods=["mean"], echo=None)
    assert report.comparison["holdout"] is None and report.comparison["oof"]["accuracy"]["verdict"]
    lines = comparison_lines(report.comparison)
    assert len(lines) == 1 and "OOF accuracy" in lines[0]
    assert report.row("mean")["holdout_accuracy_low"] is None or np.isnan(report.row("mean")["holdout_accuracy_low"])


@pytest.mark.parametrize(
    "interval, expected",
    [
        ({"value": 0.011, "low": -0.004, "high": 0.026}, "not a clear gain"),
        ({"value": -0.01, "low": -0.03, "high": 0.002}, "not a clear loss"),
        ({"value": 0.02, "low": 0.001, "high": 0.04}, "a clear gain"),
        ({"value": -0.02, "low": -0.04, "high": -0.001}, "a clear loss"),
        ({"value": 0.0, "low": 0.0, "high": 0.0}, "no difference (the same rows right and wrong)"),
    ],
)
def test_a_gain_is_clear_only_when_its_interval_excludes_zero(interval, expected):
    assert verdict(interval) == expected


def test_comparison_line_reads_as_points_with_the_interval():
    comp = {
        "ensemble": "stacking",
        "baseline": "t03",
        "n_boot": 1000,
        "oof": None,
        "holdout": {"accuracy": {"value": 0.011, "low": -0.004, "high": 0.026, "verdict": "not a clear gain"}},
    }
    assert comparison_lines(comp) == [
        (
            "chosen stacking vs best single trial t03: +1.1 points [-0.4, +2.6] holdout accuracy "
            "(paired bootstrap, 1000 resamples): not a clear gain"
        )
    ]
