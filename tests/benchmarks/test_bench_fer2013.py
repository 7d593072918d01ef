"""The pure parts of benchmarks/bench_fer2013.py: usage, dedup subsets, sampling, scores, tables, specs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_fer2013.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fer2013", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fer2013"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_fer2013", None)


def test_usage_comes_from_the_file_name_then_from_the_csv_split(bench):
    ids = ["test/angry/PublicTest_1.jpg", "test/sad/PrivateTest_9.jpg", "fer2013:30000", "fer2013:35000"]
    usage = bench.usage_of(ids, ["test", "test", "val", "test"])
    assert usage.tolist() == ["PublicTest", "PrivateTest", "PublicTest", "PrivateTest"]


def test_a_row_without_usage_is_refused_with_its_id(bench):
    with pytest.raises(ValueError, match=r"row 1 \('test/angry/img_2.jpg'\) names neither PublicTest"):
        bench.usage_of(["test/a/PublicTest_1.jpg", "test/angry/img_2.jpg"])


def test_subsets_split_by_usage_and_drop_duplicated_rows(bench):
    usage = np.array(["PublicTest", "PublicTest", "PrivateTest", "PrivateTest", "PrivateTest"], object)
    clean = np.array([True, False, True, True, False])
    masks = bench.holdout_subsets(usage, clean)
    assert list(masks) == list(bench.SUBSETS)
    assert masks["PublicTest"].tolist() == [True, True, False, False, False]
    assert masks["PrivateTest dedup"].tolist() == [False, False, True, True, False]
    assert masks["PublicTest dedup"].tolist() == [True, False, False, False, False]
    assert masks["test (both)"].all() and masks["test (both) dedup"].tolist() == clean.tolist()


def test_subsets_refuse_masks_of_other_lengths(bench):
    with pytest.raises(ValueError, match="usage has 2 rows but clean has 3"):
        bench.holdout_subsets(np.array(["PublicTest"] * 2), np.ones(3, bool))


def test_sample_is_stratified_per_split_and_keeps_leaked_pairs_whole(bench):
    rng = np.random.default_rng(0)
    splits = np.array(["train"] * 800 + ["test"] * 200)
    labels = rng.integers(0, 4, 1000)
    pairs = (np.array([810, 820, 830]), np.array([5, 15, 25]))  # (test row, its train duplicate)
    rows = bench.sample_rows(splits, labels, 80, 40, leak_pairs=pairs, n_leaked=3, seed=1)
    assert np.all(np.diff(rows) > 0)
    assert set(pairs[0]) | set(pairs[1]) <= set(rows.tolist())
    assert 80 <= (splits[rows] == "train").sum() <= 80 + 3 + 4
    assert set(labels[rows[splits[rows] == "test"]]) == {0, 1, 2, 3}
    again = bench.sample_rows(splits, labels, 80, 40, leak_pairs=pairs, n_leaked=3, seed=1)
    assert np.array_equal(rows, again)
    assert len(bench.sample_rows(splits, labels, None, None)) == 1000


def _probs(pred: np.ndarray, c: int = 3) -> np.ndarray:
    p = np.full((len(pred), c), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def test_score_table_gains_are_paired_and_zero_for_the_baseline(bench):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    weak = np.where(rng.random(400) < 0.5, y, (y + 1) % 3)
    probs = {bench.BASELINE: _probs(weak), "same": _probs(weak), "perfect": _probs(y)}
    masks = {"all": np.ones(400, bool), "half": np.arange(400) < 200}
    latency = {bench.BASELINE: {"batch_1": 2.0, "batch_64": 0.5}}
    rows = bench.score_table(y, probs, masks, n_boot=200, seed=3, latency=latency)
    assert [(r["subset"], r["model"]) for r in rows] == [
        (s, m) for s in ("all", "half") for m in (bench.BASELINE, "same", "perfect")
    ]
    by = {(r["subset"], r["model"]): r for r in rows}
    base, same, perfect = (by[("all", m)] for m in (bench.BASELINE, "same", "perfect"))
    assert base["gain_accuracy"] is None and base["latency_ms_batch_1"] == 2.0
    assert same["latency_ms_batch_64"] is None
    # identical predictions: every paired resample gives the same score, so the interval is [0, 0]
    assert same["gain_accuracy"] == same["gain_accuracy_low"] == same["gain_accuracy_high"] == 0
    assert perfect["accuracy"] == 1.0
    assert perfect["gain_accuracy"] == pytest.approx(1.0 - base["accuracy"])
    assert 0 < perfect["gain_accuracy_low"] <= perfect["gain_accuracy"] <= perfect["gain_accuracy_high"]
    assert base["accuracy_low"] <= base["accuracy"] <= base["accuracy_high"]
    assert by[("half", "perfect")]["rows"] == 200


def test_score_table_needs_its_baseline(bench):
    with pytest.raises(ValueError, match="baseline 'best single trial' is not among the models"):
        bench.score_table(np.zeros(3, int), {"x": _probs(np.zeros(3, int))}, {"all": np.ones(3, bool)})


def test_tables_show_every_subset_model_and_interval(bench):
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = {bench.BASELINE: _probs(np.array([0, 1, 1, 0, 2, 2])), "greedy": _probs(y)}
    rows = bench.score_table(
        y, probs, {"PublicTest": np.ones(6, bool)}, n_boot=50, latency={"greedy": {"batch_1": 3.25, "batch_64": 0.125}}
    )
    text, md = bench.format_table(rows), bench.markdown_table(rows)
    assert "PublicTest (6 images)" in text and "**PublicTest** (6 images)" in md
    for out in (text, md):
        assert "greedy" in out and "3.25" in out and "0.125" in out
        assert "1.0000 [1.0000, 1.0000]" in out  # greedy's accuracy and its interval
        assert "+33.3 [" in out  # its gain in points with the paired interval
    assert md.count("\n|") == 4  # header, rule, two models


def test_members_used_reads_non_zero_weights_of_the_methods_own_members(bench):
    assert bench.members_used({"weights": [0.5, 0.0, 0.5]}, ["a", "b", "c"]) == ["a", "c"]
    assert bench.members_used({"coef": [[1.0]]}, ["a", "b"]) == ["a", "b"]
    assert bench.members_used({"members": ["x", "y"], "weights": [0.0, 1.0]}, ["a"]) == ["y"]
    with pytest.raises(ValueError, match="3 weights for 2 members"):
        bench.members_used({"weights": [1, 0, 0]}, ["a", "b"])


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_profile_writes_a_spec_ferray_accepts(bench, profile, tmp_path):
    from ferray.search import load_search_spec

    path = tmp_path / "spec.yaml"
    path.write_text(bench.spec_yaml(bench.PROFILES[profile], str(tmp_path / "fer2013.parquet")))
    spec = load_search_spec(path, check_backbones=False)
    p = bench.PROFILES[profile]
    assert spec.folds.holdout == "test" and spec.folds.group_duplicates
    assert spec.data.size == p.size and spec.budget.trials == p.trials and spec.folds.k == p.k
    assert spec.space["model.backbone"].choices == list(p.backbones)
    assert spec.ensemble.methods == list(p.methods) and spec.distill.enabled
