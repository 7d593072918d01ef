import pytest

from ferray.errors import ConfigError
from ferray.training.resources import plan_resources


@pytest.mark.parametrize("k, cpus, driver", [(2, 2, 0.01), (3, 2, 0.01), (3, 2, 0.0), (5, 16, 1.0), (4, 7, 0.5)])
def test_default_share_always_fits_one_whole_trial(k, cpus, driver):
    plan = plan_resources(k, cpus, driver_cpus=driver)
    assert plan.trial_cpus <= cpus + 1e-9
    assert plan.concurrent_trials >= 1
    assert plan.concurrent_trials * plan.trial_cpus <= cpus + 1e-9


def test_the_trial_that_hung_here_is_refused_with_a_fix():
    # Driver 0.01 CPU + 2 fold workers x 1 CPU on 2 CPUs: Ray waits forever, ferray refuses.
    with pytest.raises(ConfigError, match=r"needs 2.01 CPUs .* resources.cpus_per_worker <= 0.995"):
        plan_resources(2, 2, cpus_per_worker=1.0, driver_cpus=0.01)


def test_concurrency_counts_whole_trials_not_single_requests():
    plan = plan_resources(2, 8, cpus_per_worker=1.0, driver_cpus=1.0)
    assert plan.trial_cpus == 3.0
    assert plan.concurrent_trials == 2  # 3 trials would need 9 CPUs
    assert plan_resources(2, 8, cpus_per_worker=1.0, driver_cpus=1.0, max_concurrent=1).concurrent_trials == 1


def test_gpus_bound_concurrency_and_cpus_are_shared_among_gpu_trials():
    plan = plan_resources(2, 16, 4, gpus_per_worker=1, driver_cpus=1)
    assert plan.concurrent_trials == 2
    assert plan.cpus_per_worker == 3
    with pytest.raises(ConfigError, match="needs 4 GPUs"):
        plan_resources(4, 16, 2, gpus_per_worker=1)
    assert "trials at once: 2" in plan.explain()
