from __future__ import annotations

import pytest

from ferray.errors import ConfigError
from ferray.search import load_search_spec

SPACE = "optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}"


def test_no_objectives_keeps_the_one_metric(write_spec):
    spec = load_search_spec(write_spec(SPACE, extra="search: {metric: macro_f1}\n"))
    assert not spec.search.multi_objective and spec.search.objectives is None
    assert spec.metric == "macro_f1" and spec.mode == "max"


def test_objectives_fill_in_directions_and_keys(write_spec):
    spec = load_search_spec(
        write_spec(SPACE, extra="search:\n  objectives: [{metric: accuracy}, {metric: latency_ms, direction: min}]\n")
    )
    objectives = spec.search.objectives
    assert spec.search.multi_objective
    assert [(o.metric, o.mode, o.key, o.is_cost) for o in objectives] == [
        ("accuracy", "max", "val_accuracy_mean", False),
        ("latency_ms", "min", "latency_ms", True),
    ]
    assert spec.metric == "accuracy" and spec.mode == "max"
    assert spec.base_config().run.metric == "accuracy"


def test_first_objective_loss_is_the_optimised_metric(write_spec):
    spec = load_search_spec(write_spec(SPACE, extra="search:\n  objectives: [{metric: loss}, {metric: params}]\n"))
    assert spec.metric == "loss" and spec.mode == "min"
    assert [o.mode for o in spec.search.objectives] == ["min", "min"]


@pytest.mark.parametrize(
    "objectives, match",
    [
        (
            "[{metric: accuracy}, {metric: latncy_ms}]",
            r"search\.objectives\.1\.metric: .*metric is 'latncy_ms', but must be one of accuracy, macro_f1, loss, "
            r"latency_ms, latency_ms_b64, params, macs; did you mean 'latency_ms'",
        ),
        (
            "[{metric: accuracy}, {metric: latency_ms, direction: max}]",
            r"search\.objectives\.1: .*direction is 'max', but latency_ms can only be minimised \(direction: min\)",
        ),
        ("[{metric: accuracy, direction: up}, {metric: macs}]", r"search\.objectives\.0\.direction: .*'max' or 'min'"),
        ("[{metric: accuracy}]", r"search\.objectives: .*needs at least 2; for one fold mean set search\.metric"),
        ("[{metric: accuracy}, {metric: accuracy}]", r"search\.objectives: .*name 'accuracy' twice"),
        ("[{metric: latency_ms}, {metric: accuracy}]", r"objectives\[0\] is 'latency_ms', but the first objective"),
        ("[{metric: accuracy}, {metric: macs, weight: 2}]", r"search\.objectives\.1\.weight: unknown key"),
    ],
)
def test_bad_objectives_name_the_key_and_what_is_accepted(write_spec, objectives, match):
    with pytest.raises(ConfigError, match=match):
        load_search_spec(write_spec(SPACE, extra=f"search:\n  objectives: {objectives}\n"))


def test_search_metric_must_agree_with_the_first_objective(write_spec):
    extra = "search:\n  metric: loss\n  objectives: [{metric: accuracy}, {metric: macs}]\n"
    with pytest.raises(ConfigError, match=r"metric is 'loss' but objectives\[0\] is 'accuracy'"):
        load_search_spec(write_spec(SPACE, extra=extra))


def test_the_latency_example_spec_searches_accuracy_against_latency():
    from pathlib import Path

    spec = load_search_spec(Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart_latency.yaml")
    assert [(o.metric, o.mode) for o in spec.search.objectives] == [("accuracy", "max"), ("latency_ms", "min")]
    assert spec.budget.early_stopping
