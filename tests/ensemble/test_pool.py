"""Greedy selection's pool (``ensemble.greedy.pool``): members chosen for what they add, not by rank.

The runs are synthetic run folders (see ``conftest.py``) whose trials rank by their declared
fold means: the top two are experts on the same two classes, the third an expert on the
other two, so it complements them although it ranks outside ``top 2``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferray.ensemble import build_ensembles
from ferray.errors import ConfigError
from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.predictions import read_predictions
from ferray.search import packaged_spec

from .conftest import CLASSES, TrialSpec

ALL = ["t_a", "t_b", "t_c", "t_d"]


def pool_trials() -> list[TrialSpec]:
    return [
        TrialSpec("t_a", metric=0.80, expert=(0, 1), strength=1.0),
        TrialSpec("t_b", metric=0.78, expert=(0, 1), strength=1.0),
        TrialSpec("t_c", metric=0.60, expert=(2, 3), strength=1.0),  # rank 3: sure where the top two guess
        TrialSpec("t_d", metric=0.55, strength=0.3),
    ]


def _mark_weights(run, trials=ALL) -> None:
    """Give trials a weights file: all the pool asks is that one is on disk (export tests load real ones)."""
    for tid in trials:
        path = run.layout.trial(tid).weights(0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")


def _build(run, **kw):
    kw.setdefault("echo", None)
    kw.setdefault("top", 2)
    return build_ensembles(run.root, **kw)


def test_greedy_picks_a_complementary_trial_outside_the_top(make_run):
    run = make_run(pool_trials())
    _mark_weights(run)
    wide = _build(run, methods=["greedy", "mean"], pool="all")
    assert wide.top_members == ["t_a", "t_b"] and wide.pool == ALL
    assert "t_c" in wide.method_members["greedy"]  # rank 3, yet picked: it corrects the top two
    assert wide.method_members["mean"] == ["t_a", "t_b"]
    narrow = _build(run, methods=["greedy", "mean"], pool="top_k")
    assert narrow.pool == ["t_a", "t_b"] and set(narrow.method_members["greedy"]) <= {"t_a", "t_b"}
    # The honest (cross-fitted) OOF scores show what the wider pool bought, on the holdout too.
    for key in ("oof_log_loss", "holdout_log_loss"):
        assert wide.row("greedy")[key] < narrow.row("greedy")[key] - 0.05, key
    assert wide.row("greedy")["oof_accuracy"] > narrow.row("greedy")["oof_accuracy"]


def test_pool_of_n_and_the_spec_setting(make_run):
    run = make_run(pool_trials())
    _mark_weights(run)
    assert _build(run, methods="greedy", pool=3).pool == ["t_a", "t_b", "t_c"]
    assert _build(run, methods="greedy", pool="4").pool == ALL  # `ferray ensemble --pool 4`
    assert _build(run, methods="greedy", pool=1).pool == ["t_a", "t_b"]  # never fewer than the top
    spec = (
        packaged_spec("quickstart")
        .read_text()
        .replace("greedy: {iterations: 25}", "greedy: {iterations: 25, pool: top_k}")
    )
    run = make_run(pool_trials(), spec_text=spec)
    _mark_weights(run)
    report = _build(run, methods="greedy")
    assert report.pool == ["t_a", "t_b"] and report.summary["greedy_pool"] == "top_k"


def test_the_pool_holds_only_trials_whose_weights_are_on_disk(make_run):
    run = make_run(pool_trials())
    _mark_weights(run, ["t_a", "t_b", "t_d"])  # t_c's weights were pruned: greedy could not export it
    lines: list[str] = []
    report = _build(run, methods="greedy", echo=lines.append)
    assert report.pool == ["t_a", "t_b", "t_d"] and "t_c" not in report.method_members["greedy"]
    assert any(
        line.startswith("greedy's pool (ensemble.greedy.pool: all): 3 trial(s), the top 2 and 1 more")
        and line.endswith("left out 1 without weights (removed by the retention policy): t_c")
        for line in lines
    )


@pytest.mark.parametrize("pool", ["al", 0, -2, True, 2.5, "top"])
def test_a_bad_pool_is_refused_naming_what_is_accepted(make_run, pool):
    with pytest.raises(
        ConfigError,
        match=rf"greedy pool is {pool!r}, but must be 'all' \(.*\), 'top_k' \(.*\) or an "
        r"integer >= 1",
    ):
        _build(make_run(pool_trials()), methods="greedy", pool=pool)


def test_ensemble_json_names_each_methods_members(make_run):
    run = make_run(pool_trials())
    _mark_weights(run)
    report = _build(run, methods=["greedy", "stacking", "mean", "vote"])
    summary = json.loads(run.layout.ensemble_files.summary.read_text())
    assert summary["top_members"] == ["t_a", "t_b"] and summary["pool"] == ALL and summary["greedy_pool"] == "all"
    greedy = summary["methods"]["greedy"]
    assert "t_c" in greedy["members"] and len(greedy["weights"]) == len(greedy["members"])
    assert min(greedy["weights"]) > 0 and sum(greedy["weights"]) == pytest.approx(1.0)
    # The picks are named, so they need no positions into the pool.
    assert set(greedy["indices"]) == set(greedy["members"])
    counts = {t: greedy["indices"].count(t) / len(greedy["indices"]) for t in greedy["members"]}
    assert [counts[t] for t in greedy["members"]] == pytest.approx(greedy["weights"])
    for name in ("stacking", "mean", "vote"):
        assert summary["methods"][name]["members"] == ["t_a", "t_b"]
    assert len(summary["methods"]["mean"]["weights"]) == 2
    assert summary["baseline"] == "t_a" == report.baseline
    # The table scores every trial a method used (t_d was not), ranked among all finished trials.
    members = [(r["name"], r["rank"]) for r in report.table if r["kind"] == "member"]
    assert members == [("t_a", 1), ("t_b", 2), ("t_c", 3)]
    assert report.row("greedy")["members"] == len(greedy["members"])


def test_the_chosen_methods_members_are_what_later_stages_read(make_run):
    from ferray.distill import read_ensemble_members
    from ferray.export import read_ensemble_summary
    from ferray.report._run import collect_run

    run = make_run(pool_trials())
    _mark_weights(run)
    report = _build(run, methods=["greedy", "mean"])
    assert report.chosen == "greedy" and "t_c" in report.members  # greedy's OOF log-loss beats the mean's here
    summary = json.loads(run.layout.ensemble_files.summary.read_text())
    weights = summary["methods"]["greedy"]["weights"]
    assert [m["trial_id"] for m in summary["members"]] == report.members == summary["methods"]["greedy"]["members"]
    assert next(m for m in summary["members"] if m["trial_id"] == "t_c")["rank"] == 3
    assert read_predictions(run.layout.ensemble_files.oof).meta["members"] == report.members  # export's calibration

    exported = read_ensemble_summary(run.layout.ensemble_files.summary)
    assert (exported["method"], exported["members"], exported["weights"]) == ("greedy", report.members, weights)
    assert [m["trial_id"] for m in exported["member_info"]] == report.members
    distilled = read_ensemble_members(run.layout)
    assert list(distilled.trial_ids) == report.members and list(distilled.weights.values()) == weights
    reported = collect_run(run.root)["models"]["ensemble"]
    assert (reported["method"], reported["members"], reported["weights"]) == ("greedy", report.members, weights)


def test_old_ensemble_files_with_one_member_list_still_read(make_run):
    """ensemble.json as ferray wrote it before per-method members: one top-level list, which
    every method's weights align with (greedy's never-picked members at weight 0)."""
    from ferray.distill import read_ensemble_members
    from ferray.export import read_ensemble_summary
    from ferray.report._run import collect_run

    run = make_run(pool_trials())
    _build(run, methods="mean")  # the predictions files an old run has
    old = {
        "chosen": "greedy",
        "top": 3,
        "members": [{"trial_id": t, "rank": i + 1, "state": "COMPLETED"} for i, t in enumerate(["t_a", "t_b", "t_c"])],
        "methods": {
            "greedy": {"method": "greedy", "weights": [0.6, 0.0, 0.4], "indices": [0, 2, 0]},
            "mean": {"method": "mean", "weights": [1 / 3] * 3},
        },
    }
    run.layout.ensemble_files.summary.write_text(json.dumps(old))
    exported = read_ensemble_summary(run.layout.ensemble_files.summary)
    assert exported["members"] == ["t_a", "t_b", "t_c"] and exported["weights"] == [0.6, 0.0, 0.4]
    distilled = read_ensemble_members(run.layout)
    assert distilled.trial_ids == ("t_a", "t_c") and distilled.weights == {"t_a": 0.6, "t_c": 0.4}
    reported = collect_run(run.root)["models"]["ensemble"]
    assert (reported["members"], reported["weights"]) == (["t_a", "t_b", "t_c"], [0.6, 0.0, 0.4])


def test_retention_keeps_the_pool_for_the_ensemble_then_prunes_non_members(make_run):
    from ferray.run.retention import apply_retention

    spec = packaged_spec("quickstart").read_text().replace("top_k: 3", "top_k: 2").replace("margin: 2", "margin: 0")
    trials = pool_trials() + [TrialSpec("t_e", metric=0.50, strength=0.3)]
    run = make_run(trials, spec_text=spec)
    ids = [t.trial_id for t in trials]
    _mark_weights(run, ids)

    def with_weights() -> list[str]:
        return [t for t in ids if run.layout.trial(t).weights_dir.is_dir()]

    report = apply_retention(run.root)  # as the sweep's driver does when trials end
    assert report.awaiting == ["t_c", "t_d", "t_e"] and with_weights() == ids
    picked = _build(run, top=None, methods="greedy").members  # the spec's top_k 2, pool all
    assert "t_c" in picked
    apply_retention(run.root)  # as the pipeline does after the ensemble
    assert with_weights() == [t for t in ids if t in {"t_a", "t_b"} | set(picked)]
    assert not run.layout.trial("t_e").weights_dir.exists()


def _real_weights(trial: TrialLayout, seed: int, k: int) -> None:
    """Tiny real fold models (timm's test_resnet) saved as a finished trial saves them."""
    import torch

    from ferray.training.config import TrainConfig
    from ferray.training.models import build_model
    from ferray.training.weights import save_weights

    cfg = TrainConfig.model_validate({"model": {"backbone": "test_resnet", "pretrained": False}})
    for fold in range(k):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 10 + fold)
            model = build_model(cfg.model, num_classes=len(CLASSES), in_chans=1, img_size=16)
        save_weights(
            model,
            trial.weights(fold),
            {
                "train": cfg.model_dump(mode="json"),
                "num_classes": len(CLASSES),
                "in_chans": 1,
                "img_size": 16,
                "class_names": CLASSES,
                "fold": fold,
                "k": k,
                "ema": False,
                "normalise": {"mean": 0.5, "std": 0.5},
                "data_fingerprint": "fp-run",
            },
        )


def test_a_member_from_outside_the_top_is_exported(make_run, tmp_path):
    from ferray.export import export_run

    run = make_run(pool_trials(), k=1)
    for seed, tid in enumerate(ALL):
        _real_weights(run.layout.trial(tid), seed, k=1)
    report = _build(run, methods="greedy")
    assert "t_c" in report.members
    bundle = export_run(run.root, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    ensemble = manifest["ensemble"]
    assert [m["name"] for m in ensemble["members"]] == report.members
    assert ensemble["weights"] == pytest.approx(report.summary["methods"]["greedy"]["weights"])
    assert all(m["folds"] == 1 for m in ensemble["members"])
    # The temperature is fitted on the chosen ensemble's OOF rows: they belong to these members.
    assert manifest["calibration"]["ensemble"]["fitted_on"] == "out-of-fold"
    assert RunLayout(run.root).ensemble_files.oof.is_file() and np.isfinite(
        manifest["calibration"]["ensemble"]["temperature"]
    )
