"""The spec's ``ensemble`` section (ferray.run.EnsembleConfig), as ferray ensemble reads it."""

from __future__ import annotations

import re

import pytest

from ferray.errors import ConfigError
from ferray.run.sections import EnsembleConfig
from ferray.search import load_search_spec, packaged_spec


def test_every_method_is_accepted_and_greedy_stays_the_default():
    assert EnsembleConfig().methods == ["greedy"]
    text = re.sub(
        r"methods: \[[^]]*\]", "methods: [greedy, stacking, mean, vote]", packaged_spec("quickstart").read_text()
    )
    spec = load_search_spec("spec.yaml", text=text, check_backbones=False)
    assert spec.ensemble.methods == ["greedy", "stacking", "mean", "vote"]


def test_an_unknown_method_is_refused_with_the_valid_names():
    text = re.sub(r"methods: \[[^]]*\]", "methods: [greedy, blend]", packaged_spec("quickstart").read_text())
    with pytest.raises(
        ConfigError,
        match=r"spec.yaml:\d+: ensemble.methods.1: Input should be 'greedy', "
        r"'stacking', 'mean' or 'vote' \(got 'blend'\)",
    ):
        load_search_spec("spec.yaml", text=text, check_backbones=False)


def test_the_latency_budget_is_a_positive_number_of_ms():
    assert EnsembleConfig().max_latency_ms is None
    base = packaged_spec("quickstart").read_text()
    text = re.sub(r"\n  top_k: 3[^\n]*", "\n  top_k: 3\n  max_latency_ms: 12.5", base)
    assert load_search_spec("spec.yaml", text=text, check_backbones=False).ensemble.max_latency_ms == 12.5
    text = re.sub(r"\n  top_k: 3[^\n]*", "\n  top_k: 3\n  max_latency_ms: 0", base)
    with pytest.raises(
        ConfigError, match=r"spec.yaml:\d+: ensemble.max_latency_ms: Input should be greater than 0 \(got 0\)"
    ):
        load_search_spec("spec.yaml", text=text, check_backbones=False)
