from __future__ import annotations

import pytest

from ferray.errors import ConfigError
from ferray.search import SearchSpec, plan_search_resources
from ferray.search._plan import DRIVER_CPUS


def _spec(**budget_resources) -> SearchSpec:
    budget = {k: v for k, v in budget_resources.items() if k in ("max_concurrent",)}
    resources = {k: v for k, v in budget_resources.items() if k in ("cpus_per_worker", "gpus_per_worker")}
    return SearchSpec.model_validate(
        {
            "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.01}},
            "budget": {"trials": 4, "max_epochs": 2, **budget},
            "resources": resources,
        }
    )


def test_two_cpus_two_folds_two_trials_fit_with_their_drivers():
    plan = plan_search_resources(_spec(max_concurrent=2), k=2, cluster_cpus=2)
    assert plan.concurrent_trials == 2 and plan.driver_cpus == DRIVER_CPUS > 0
    # Whole demand of every concurrent trial fits: no driver starves its own workers.
    assert plan.concurrent_trials * plan.trial_cpus <= 2 + 1e-9


def test_default_gives_one_trial_the_machine():
    plan = plan_search_resources(_spec(), k=2, cluster_cpus=2)
    assert plan.concurrent_trials == 1 and plan.trial_cpus <= 2


def test_the_hang_seen_on_two_cpus_is_refused_before_ray():
    # driver 0.01 + 2 workers x 1 CPU = 2.01 > 2: could never start.
    with pytest.raises(ConfigError, match="can never be placed: one trial needs 2.01 CPUs"):
        plan_search_resources(_spec(cpus_per_worker=1.0), k=2, cluster_cpus=2)


def test_max_concurrent_caps_trials():
    plan = plan_search_resources(_spec(cpus_per_worker=1.0, max_concurrent=2), k=2, cluster_cpus=16)
    assert plan.concurrent_trials == 2


def test_gpus_bound_concurrency():
    plan = plan_search_resources(_spec(gpus_per_worker=1.0), k=4, cluster_cpus=64, cluster_gpus=8)
    assert plan.concurrent_trials == 2 and plan.trial_gpus == 4


def test_too_few_gpus_is_refused():
    with pytest.raises(ConfigError, match="GPUs"):
        plan_search_resources(_spec(gpus_per_worker=1.0), k=4, cluster_cpus=64, cluster_gpus=2)
