"""The ensemble's latency budget (``ensemble.max_latency_ms``, ``--max-latency-ms``).

Greedy selection on seeded member probabilities; the build on synthetic run folders (real
prediction files, see ``conftest.py``) whose trials carry a measured ``latency_ms``. Without
weights on disk a member runs its OOF file's ``k`` (3) fold models; with one weights file, one.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ferray.ensemble import GreedyEnsemble, build_ensembles
from ferray.errors import ConfigError, DataError
from ferray.search import packaged_spec

from .conftest import TrialSpec, complementary
from .test_pool import _mark_weights


def _distinct_cost(est: GreedyEnsemble, costs: np.ndarray) -> float:
    return float(costs[est.weights_ > 0].sum())


def test_greedy_without_a_budget_uses_every_complementary_member():
    P, y = complementary()
    assert (GreedyEnsemble(iterations=25).fit(P, y).weights_ > 0).sum() >= 2


@pytest.mark.parametrize("max_cost", [1.0, 2.5, 3.0])
def test_greedy_keeps_its_distinct_members_within_the_budget(max_cost):
    P, y = complementary()
    costs = np.array([1.0, 1.5, 1.0])
    est = GreedyEnsemble(iterations=25, member_costs=costs, max_cost=max_cost).fit(P, y)
    assert _distinct_cost(est, costs) <= max_cost
    np.testing.assert_allclose(est.weights_.sum(), 1.0)
    if max_cost == 1.0:
        assert (est.weights_ > 0).sum() == 1  # a re-pick is free, a second member is not


def test_greedy_skips_a_member_over_the_budget_and_still_picks_the_rest():
    P, y = complementary()
    free = GreedyEnsemble(iterations=25).fit(P, y)
    best = int(np.argmax(free.weights_))
    costs = np.ones(3)
    costs[best] = 10.0
    est = GreedyEnsemble(iterations=25, member_costs=costs, max_cost=5.0).fit(P, y)
    assert est.weights_[best] == 0 and est.weights_.sum() == pytest.approx(1.0)


def test_bagged_greedy_bags_share_the_budget():
    P, y = complementary()
    P = np.concatenate([P, P[::-1] * 0.999 + 0.001 / 4])
    costs = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    est = GreedyEnsemble(iterations=10, bags=6, bag_fraction=0.5, member_costs=costs, max_cost=2.0, seed=1).fit(P, y)
    assert _distinct_cost(est, costs) <= 2.0


def test_greedy_refuses_a_budget_no_member_fits():
    P, y = complementary()
    with pytest.raises(ValueError, match=r"no member fits max_cost 0.5 \(the cheapest costs 1\)"):
        GreedyEnsemble(member_costs=[1.0, 2.0, 3.0], max_cost=0.5).fit(P, y)
    with pytest.raises(ValueError, match=r"member_costs has 2 values, but P has 3 members"):
        GreedyEnsemble(member_costs=[1.0, 2.0], max_cost=5.0).fit(P, y)


def timed_trials() -> list[TrialSpec]:
    # k = 3 fold models each: member latencies 3.0, 6.0, 1.5, 0.6 ms.
    return [
        TrialSpec("t_a", metric=0.71, expert=(0, 1), strength=1.0, latency_ms=1.0),
        TrialSpec("t_b", metric=0.69, expert=(2, 3), strength=1.0, latency_ms=2.0),
        TrialSpec("t_c", metric=0.66, strength=1.0, latency_ms=0.5),
        TrialSpec("t_d", metric=0.60, strength=0.5, latency_ms=0.2),
    ]


def _build(run, **kw):
    kw.setdefault("echo", None)
    return build_ensembles(run.root, **kw)


def test_top_k_takes_the_best_trials_that_fit_together(make_run):
    run = make_run(timed_trials())
    lines: list[str] = []
    report = _build(run, top=4, methods=["mean"], max_latency_ms=5.0, echo=lines.append)
    # t_a (3.0) fits; t_b would make 9.0; t_c makes 4.5; t_d would make 5.1.
    assert report.top_members == report.members == ["t_a", "t_c"]
    summary = json.loads((run.root / "ensemble" / "ensemble.json").read_text())
    assert summary["max_latency_ms"] == 5.0 and summary["latency_ms"] == pytest.approx(4.5)
    member = summary["members"][0]
    assert (member["latency_ms"], member["fold_models"], member["member_latency_ms"]) == (1.0, 3, 3.0)
    assert any("skipped t_b (6 ms), t_d (0.6 ms)" in line for line in lines)


def test_without_a_budget_the_latency_is_still_recorded(make_run):
    report = _build(make_run(timed_trials()), top=2, methods=["mean"])
    assert report.members == ["t_a", "t_b"]
    assert report.summary["max_latency_ms"] is None and report.summary["latency_ms"] == pytest.approx(9.0)


def test_greedy_picks_within_the_budget_from_a_wider_pool(make_run):
    run = make_run(timed_trials())
    _mark_weights(run)  # one weights file each: one fold model per member, and the pool may widen
    free = _build(run, top=1, methods=["greedy"], pool="all")
    assert free.summary["latency_ms"] > 1.2
    report = _build(run, top=1, methods=["greedy"], pool="all", max_latency_ms=1.2)
    assert report.pool == ["t_a", "t_c", "t_d"]  # t_b alone costs 2.0
    assert report.summary["latency_ms"] <= 1.2
    assert report.summary["methods"]["greedy"]["settings"]["max_cost"] == 1.2


def test_no_trial_within_the_budget_names_the_budget_and_the_fastest_trial(make_run):
    run = make_run(timed_trials())
    with pytest.raises(
        ConfigError,
        match=r"ensemble.max_latency_ms is 0.1 ms, but no finished trial fits it: the fastest, t_d, "
        r"runs 0.6 ms per image at batch 1 \(0.2 ms x 3 fold models\)",
    ):
        _build(run, max_latency_ms=0.1)
    assert not (run.root / "ensemble").exists()


def test_a_budget_without_measured_latencies_is_refused(make_run):
    with pytest.raises(DataError, match=r"no finished trial has a measured latency_ms"):
        _build(make_run(), max_latency_ms=10.0)


@pytest.mark.parametrize("bad", [0, -1.0, "fast", True])
def test_bad_budget_is_refused(make_run, bad):
    with pytest.raises(ConfigError, match=r"max_latency_ms = .*, but must be a number of ms > 0"):
        _build(make_run(timed_trials()), max_latency_ms=bad)


def test_the_budget_comes_from_the_spec(make_run):
    spec = packaged_spec("quickstart").read_text()
    spec = re.sub(r"\n  top_k: 3[^\n]*", "\n  top_k: 4\n  max_latency_ms: 5.0", spec)
    report = _build(make_run(timed_trials(), spec_text=spec), methods=["mean"])
    assert report.members == ["t_a", "t_c"] and report.summary["max_latency_ms"] == 5.0
