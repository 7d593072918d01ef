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
