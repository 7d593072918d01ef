"""Stall limits: the startup and per-epoch bounds, and the spec keys that set them (no Ray).

Real sweeps whose fold workers or trial actor freeze are in ``test_stall_ray.py``.
"""

from __future__ import annotations

import pytest

from ferray.search._stall import StallLimits


def test_startup_limit_applies_until_the_first_report():
    limits = StallLimits(startup_s=900, every_s=None, factor=5, min_s=300)
    assert limits.limit(None) == 900
    assert limits.limit(10.0) == 300  # 5 x 10 s is under the floor
    assert limits.limit(200.0) == 1000  # 5 x the longest epoch
    assert StallLimits(every_s=30).limit(200.0) == 30
    assert StallLimits(startup_s=60).driver_limit(None, margin_s=120) == 180


def test_spec_budget_sets_the_stall_limits(write_spec):
    from ferray.search import load_search_spec

    spec = load_search_spec(
        write_spec(
            "optim.lr: {type: float, low: 0.001, high: 0.01}",
            extra="",
            base=(
                "name: t\ndata: {source: 'synthetic:basic7?count=70'}\nfolds: {k: 2}\n"
                "model: {backbone: test_resnet}\nbudget: {trials: 2, max_epochs: 2, startup_timeout_s: 60, "
                "stall_timeout_s: 15}\n"
            ),
        )
    )
    limits = spec.budget.stall_limits()
    assert limits.limit(None) == 60 and limits.limit(1.0) == 15


def test_a_non_positive_stall_timeout_is_refused_with_its_key(write_spec):
    from ferray.errors import ConfigError
    from ferray.search import load_search_spec

    path = write_spec(
        "optim.lr: {type: float, low: 0.001, high: 0.01}",
        base=(
            "name: t\ndata: {source: 'synthetic:basic7?count=70'}\nfolds: {k: 2}\nmodel: {backbone: test_resnet}\n"
            "budget: {trials: 2, max_epochs: 2, stall_timeout_s: 0}\n"
        ),
    )
    with pytest.raises(ConfigError, match=r"budget\.stall_timeout_s"):
        load_search_spec(path)
