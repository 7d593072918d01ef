from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from ferray.ensemble import CHOSEN_BY, build_ensembles
from ferray.errors import ConfigError, DataError
from ferray.run.layout import RunLayout
from ferray.run.predictions import Predictions, read_predictions, write_predictions
from ferray.search import packaged_spec

from .conftest import CLASSES, TrialSpec, standard_trials

SCORES = [f"{part}_{m}" for part in ("oof", "holdout") for m in ("accuracy", "macro_f1", "log_loss")]


def _build(run, **kw):
    kw.setdefault("echo", None)
    return build_ensembles(run.root, **kw)


def test_writes_the_table_the_summary_and_the_chosen_predictions(make_run):
    run = make_run()
    report = _build(run, top=4, methods="all")
    files = RunLayout(run.root).ensemble_files
    assert report.path == run.layout.ensemble
    assert sorted(p.name for p in report.path.iterdir()) == sorted(
        [files.TABLE, files.SUMMARY, files.OOF, files.HOLDOUT]
    )
    assert [p.name for p in run.root.iterdir() if p.name.startswith(".")] == []  # no temp folders left

    table = pq.read_table(files.table).to_pylist()
    assert [(r["kind"], r["name"]) for r in table] == [
        ("member", "t_a"),
        ("member", "t_b"),
        ("member", "t_c"),
        ("member", "t_d"),
        ("ensemble", "greedy"),
        ("ensemble", "stacking"),
        ("ensemble", "mean"),
        ("ensemble", "vote"),
    ]
    assert table == [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in report.table
    ]
    for r in table:
        assert all(r[k] is not None for k in SCORES)
    base = table[0]
    for r in table:
        assert r["gain_oof_accuracy"] == pytest.approx(r["oof_accuracy"] - base["oof_accuracy"])
        assert r["gain_holdout_log_loss"] == pytest.approx(base["holdout_log_loss"] - r["holdout_log_loss"])
    assert [r["name"] for r in table if r["chosen"]] == [report.chosen]

    summary = json.loads(files.summary.read_text())
    assert summary["chosen"] == report.chosen and summary["chosen_by"] == CHOSEN_BY == "oof_log_loss"
    ensembles = [r for r in table if r["kind"] == "ensemble"]
    assert report.chosen == min(ensembles, key=lambda r: r["oof_log_loss"])["name"]
    assert summary["best"] == report.best
    assert summary["best"]["accuracy"] == max(ensembles, key=lambda r: r["oof_accuracy"])["name"]
    # No trial has weights on disk here: greedy's pool is the top 4 as well.
    assert summary["top_members"] == summary["pool"] == ["t_a", "t_b", "t_c", "t_d"]
    for name in ("stacking", "mean", "vote"):
        assert summary["methods"][name]["members"] == ["t_a", "t_b", "t_c", "t_d"]
    # The top-level members are the chosen method's: what export and distillation load.
    assert [m["trial_id"] for m in summary["members"]] == summary["methods"][report.chosen]["members"] == report.members
    first = next(m for m in summary["members"] if m["trial_id"] == "t_a")
    assert first["params"] == {"optim.lr": 0.001, "model.backbone": "resnet10t"} and first["rank"] == 1
    assert first["fold_mean"] == pytest.approx(0.71)
    assert sum(summary["methods"]["greedy"]["weights"]) == pytest.approx(1.0)
    assert np.array(summary["methods"]["stacking"]["coef"]).shape == (4, 16)
    assert summary["methods"]["stacking"]["oof_source"] == "inner_cv"
    assert summary["methods"]["greedy"]["oof_source"] == "cross_fitted"
    assert summary["methods"]["mean"]["oof_source"] == "direct"

    oof = read_predictions(files.oof)
    hold = read_predictions(files.holdout)
    assert oof.rows.tolist() == run.cv_rows.tolist()  # sorted by row, every cv row once
    assert oof.folds.tolist() == run.folds.tolist() and oof.labels.tolist() == run.labels[run.cv_rows].tolist()
    assert hold.rows.tolist() == run.holdout_rows.tolist()  # one row per holdout row ...
    assert set(hold.folds.tolist()) == {-1}  # ... not per fold model
    assert oof.class_names == CLASSES and oof.meta["kind"] == "oof" and hold.meta["kind"] == "holdout"
    assert oof.meta["ensemble"] == report.chosen and oof.meta["members"] == report.members
    assert oof.meta["data_fingerprint"] == "fp-run"
    np.testing.assert_allclose(oof.probs.sum(axis=1), 1.0, atol=1e-5)
    chosen = report.row(report.chosen)
    from ferray.metrics import log_loss

    assert log_loss(oof.labels, oof.probs) == pytest.approx(chosen["oof_log_loss"], abs=1e-5)
    assert log_loss(hold.labels, hold.probs) == pytest.approx(chosen["holdout_log_loss"], abs=1e-5)


def test_ensembles_beat_the_best_single_trial_when_members_complement(make_run):
    report = _build(make_run(), top=2, methods=["greedy", "stacking", "mean"])
    for name in ("greedy", "stacking", "mean"):
        assert report.row(name)["gain_oof_log_loss"] > 0
        assert report.row(name)["gain_holdout_accuracy"] > 0


def test_mean_method_is_the_average_of_members_and_holdout_the_mean_of_fold_models(make_run):
    run = make_run()
    _build(run, top=3, methods="mean")
    files = run.layout.ensemble_files
    oofs = [read_predictions(run.layout.trial(t).oof) for t in ("t_a", "t_b", "t_c")]
    aligned = [p.probs[np.argsort(p.rows)] for p in oofs]  # the trials' files are not sorted by row
    np.testing.assert_allclose(read_predictions(files.oof).probs, np.mean(aligned, axis=0), atol=1e-6)
    holds = [read_predictions(run.layout.trial(t).holdout) for t in ("t_a", "t_b", "t_c")]
    per_member = [h.probs.reshape(run.k, -1, 4).mean(axis=0) for h in holds]  # written fold by fold
    np.testing.assert_allclose(read_predictions(files.holdout).probs, np.mean(per_member, axis=0), atol=1e-6)


def test_defaults_come_from_the_spec(make_run):
    report = _build(make_run())  # quickstart: ensemble.top_k 3, methods [greedy, stacking, mean]
    assert report.top_members == ["t_a", "t_b", "t_c"] and report.methods == ["greedy", "stacking", "mean"]
    assert report.summary["methods"]["greedy"]["settings"] == {
        "iterations": 25,
        "metric": "log_loss",
        "seed": 0,
        "bags": 1,
        "bag_fraction": 0.5,
        "member_costs": None,
        "max_cost": None,
    }
    assert report.summary["greedy_pool"] == "all" and report.summary["max_latency_ms"] is None
    spec = packaged_spec("quickstart").read_text()
    spec = re.sub(r"\n  top_k: 3[^\n]*", "\n  top_k: 2", spec)
    spec = re.sub(r"\n  methods: \[[^]]*\][^\n]*", "\n  methods: [mean, vote]", spec)
    spec = re.sub(r"\n  greedy: \{iterations: 25\}[^\n]*", "\n  greedy: {iterations: 7}\n  seed: 5", spec)
    report = _build(make_run(spec_text=spec))
    assert report.top_members == report.members == ["t_a", "t_b"] and report.methods == ["mean", "vote"]
    assert report.summary["greedy_pool"] is None and report.pool == ["t_a", "t_b"]  # no greedy: no wider pool
    assert report.summary["seed"] == 5


def test_greedy_weights_use_oof_rows_only(make_run):
    run = make_run()
    first = _build(run, top=4, methods=["greedy", "stacking"])
    for t in ("t_a", "t_b", "t_c", "t_d"):  # scramble every member's holdout labels
        path = run.layout.trial(t).holdout
        h = read_predictions(path)
        write_predictions(Predictions(h.rows, h.ids, h.folds, (h.labels + 1) % 4, h.probs, None, h.meta), path)
    second = _build(run, top=4, methods=["greedy", "stacking"])
    for name in ("greedy", "stacking"):
        a, b = first.summary["methods"][name], second.summary["methods"][name]
        assert a.get("weights") == b.get("weights") and a.get("coef") == b.get("coef")
        assert first.row(name)["oof_log_loss"] == second.row(name)["oof_log_loss"]
        assert first.row(name)["holdout_accuracy"] != second.row(name)["holdout_accuracy"]  # labels did change


def test_same_seed_same_ensemble(make_run):
    run = make_run()
    a = _build(run, top=4, methods="all", seed=3)
    b = _build(run, top=4, methods="all", seed=3)
    assert a.summary["methods"] == b.summary["methods"] and a.table == b.table


def test_pruned_trials_only_when_asked(make_run):
    run = make_run()
    assert "t_p" not in _build(run, top=4, methods="mean").members
    # t_p's fold mean (0.75) is the best of the run; pruned trials rarely leave predictions, this one did.
    assert _build(run, top=4, methods="mean", include_pruned=True).members == ["t_p", "t_a", "t_b", "t_c"]


def test_trials_without_predictions_are_skipped(make_run):
    trials = standard_trials()
    trials[0].files = ("holdout",)  # t_a finished without oof.parquet
    lines = []
    report = build_ensembles(make_run(trials).root, top=3, methods="mean", echo=lines.append)
    assert report.members == ["t_b", "t_c", "t_d"]
    assert any("skipping 1 finished trial(s) without predictions: t_a (no oof.parquet)" in s for s in lines)


def test_rebuilding_replaces_the_folder_and_a_failure_keeps_the_old_one(make_run, monkeypatch):
    run = make_run()
    _build(run, top=2, methods="mean")
    files = run.layout.ensemble_files
    before = {p.name: p.read_bytes() for p in files.root.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("ferray.ensemble._build.write_predictions", boom)
    with pytest.raises(OSError, match="disk full"):
        _build(run, top=3, methods="vote")
    assert {p.name: p.read_bytes() for p in files.root.iterdir()} == before
    assert [p.name for p in run.root.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    report = _build(run, top=3, methods="vote")
    assert json.loads(files.summary.read_text())["chosen"] == report.chosen == "vote"


def test_report_renders_and_serialises(make_run):
    from rich.console import Console

    report = _build(make_run(), top=3, methods=["greedy", "mean"])
    console = Console(record=True, width=200)
    console.print(report.render())
    text = console.export_text()
    for word in ("t_a", "greedy", "mean", "OOF log-loss", "holdout acc", "chosen:"):
        assert word in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["chosen"] == report.chosen and len(data["table"]) == 5


# ---- refusals ------------------------------------------------------------------------------------


def test_more_members_than_finished_trials_is_refused(make_run):
    run = make_run()
    with pytest.raises(
        ConfigError,
        match=r"top = 9 asks for 9 members, but the run has 4 finished trial\(s\) with "
        r"predictions \(t_a, t_b, t_c, t_d\); ask for at most 4 "
        r"\(or add --include-pruned: 1 pruned trial\(s\) with predictions\)",
    ):
        _build(run, top=9)
    spec = packaged_spec("quickstart").read_text().replace("top_k: 3", "top_k: 6")
    with pytest.raises(ConfigError, match=r"ensemble.top_k = 6 \(.*spec.yaml\) asks for 6 members"):
        _build(make_run(spec_text=spec))


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_bad_top_is_refused(make_run, top):
    with pytest.raises(ConfigError, match=r"top = .*, but must be an integer >= 1"):
        _build(make_run(), top=top)


def test_members_from_different_data_are_refused_by_name(make_run):
    trials = standard_trials()
    trials[2].fingerprint = "fp-other"
    with pytest.raises(
        DataError,
        match=r"do not share one dataset and fold plan: data fingerprint fp-run for "
        r"t_a, t_b; data fingerprint fp-other for t_c",
    ):
        _build(make_run(trials), top=3)


def test_members_with_different_folds_are_refused_by_name(make_run):
    trials = standard_trials()
    trials[1].fold_shift = 1
    with pytest.raises(
        DataError,
        match=r"do not share one fold plan: trial t_b puts 240 OOF row\(s\) in a "
        r"different fold than trial t_a",
    ):
        _build(make_run(trials), top=2)


def test_members_with_different_rows_are_refused(make_run):
    trials = standard_trials()
    trials[1].drop_rows = 5
    with pytest.raises(DataError, match=r"trial t_b has OOF predictions for 235 rows, trial t_a for 240"):
        _build(make_run(trials), top=2)


def test_a_run_where_every_trial_errored_is_refused(make_run):
    trials = [
        TrialSpec("e1", state="ERROR", metric=None, files=()),
        TrialSpec("e2", state="ERROR", metric=None, files=()),
    ]
    with pytest.raises(DataError, match=r"nothing to ensemble: every trial errored \(2 error\); see `ferray status"):
        _build(make_run(trials))


def test_a_run_without_oof_files_is_refused(make_run):
    trials = [TrialSpec("a", files=("holdout",)), TrialSpec("b", files=())]
    with pytest.raises(
        DataError,
        match=r"no finished trial has oof.parquet and holdout.parquet: a \(no "
        r"oof.parquet\), b \(no oof.parquet or holdout.parquet\)",
    ):
        _build(make_run(trials))


def test_only_pruned_trials_point_at_include_pruned(make_run):
    with pytest.raises(DataError, match=r"no trial completed \(1 pruned\); pruned trials count with --include-pruned"):
        _build(make_run([TrialSpec("p", state="PRUNED")]))


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, make_run):
    with pytest.raises(ConfigError, match=r"no such run directory"):
        build_ensembles(tmp_path / "nope", echo=None)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match=r"not a ferray run directory \(no spec.yaml\)"):
        build_ensembles(tmp_path / "plain", echo=None)
    run = make_run()
    run.layout.results.unlink()
    with pytest.raises(DataError, match=r"no results.parquet yet: no trial has reported"):
        _build(run)


def test_unknown_method_is_refused_before_any_work(make_run):
    run = make_run()
    with pytest.raises(ConfigError, match=r"unknown ensemble method 'stacker'; did you mean 'stacking'\?"):
        _build(run, methods=["greedy", "stacker"])
    assert not run.layout.ensemble.exists()


def test_a_run_without_holdout_writes_an_empty_holdout_file(make_run):
    report = _build(make_run(n_holdout=0), top=2, methods=["greedy", "mean"])
    assert report.row("greedy")["holdout_accuracy"] is None or np.isnan(report.row("greedy")["holdout_accuracy"])
    hold = read_predictions(report.path / "holdout.parquet")
    assert len(hold) == 0 and hold.class_names == CLASSES
    assert json.loads((report.path / "ensemble.json").read_text())["methods"]["mean"]["holdout_accuracy"] is None


def test_au_probabilities_are_the_members_mean(make_run):
    run = make_run(n_aus=5)
    _build(run, top=2, methods="greedy")
    files = run.layout.ensemble_files
    members = [read_predictions(run.layout.trial(t).oof) for t in ("t_a", "t_b")]
    expected = np.mean([m.au_probs[np.argsort(m.rows)] for m in members], axis=0)
    np.testing.assert_allclose(read_predictions(files.oof).au_probs, expected, atol=1e-6)
    hold = read_predictions(files.holdout)
    assert hold.au_probs.shape == (len(run.holdout_rows), 5)
