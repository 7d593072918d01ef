"""Resource plans: what a trial's fold workers ask for, and how many trials run at once."""

import pytest

from ferray.errors import ConfigError
from ferray.runtime.nodes import NodeSpec
from ferray.runtime.planner import plan_resources


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


# -- node-aware plans: what fits on which node -----------------------------------------------------

HEAD = NodeSpec("head", 8, 0, head=True)


def test_a_cpu_head_and_two_gpu_nodes_hold_workers_only_where_there_are_gpus():
    nodes = [HEAD, NodeSpec("gpu", 8, 1, count=2)]
    plan = plan_resources(2, nodes=nodes, gpus_per_worker=0.5, driver_cpus=0.01)
    assert plan.workers_per_node == (0, 2)  # the head has no GPU: never a fold worker there
    assert plan.concurrent_trials == 2  # 4 half-GPU slots = 2 trials of 2 folds
    assert plan.cpus_per_worker == 4  # the GPU nodes' CPUs shared among those workers, drivers on the head
    assert plan.drivers_on_head and plan.driver_resources["node:__internal_head__"] > 0
    # 3 folds x (5 CPU, 0.5 GPU): the totals (24 CPUs, 2 GPUs) would hold them, the nodes hold 2
    with pytest.raises(
        ConfigError,
        match=r"one trial needs 15.01 CPUs \(driver 0.01 \+ 3 fold workers x 5 \(with "
        r"0.5 GPU\)\) but the nodes hold 2 such workers at once \(head 0, gpu 1 "
        r"per node; .*Set resources.cpus_per_worker <= 4 or use fewer folds",
    ):
        plan_resources(3, nodes=nodes, cpus_per_worker=5, gpus_per_worker=0.5, driver_cpus=0.01)


def test_mixed_one_and_four_gpu_nodes_are_packed_node_by_node():
    nodes = [HEAD, NodeSpec("gpu1", 8, 1, count=2), NodeSpec("gpu4", 32, 4)]
    plan = plan_resources(3, nodes=nodes, cpus_per_worker=8, gpus_per_worker=1, driver_cpus=0.01)
    # gpu1 nodes hold one 8-CPU worker each, gpu4 four: 6 workers = 2 trials of 3 folds
    assert plan.workers_per_node == (0, 1, 4) and plan.concurrent_trials == 2
    # 10 CPUs per worker: gpu1 nodes hold none, gpu4 three: one trial
    plan = plan_resources(3, nodes=nodes, cpus_per_worker=10, gpus_per_worker=1, driver_cpus=0.01)
    assert plan.workers_per_node == (0, 0, 3) and plan.concurrent_trials == 1
    # the totals (6 GPUs) would admit two trials of 3 whole-GPU folds at 10 CPUs; the nodes hold 3 workers
    assert plan.cluster_gpus == 6 and plan.concurrent_trials * 3 * 1 < plan.cluster_gpus


def test_without_a_head_every_node_keeps_room_for_all_drivers():
    nodes = [NodeSpec("a", 4, 1), NodeSpec("b", 4, 1)]
    plan = plan_resources(2, nodes=nodes, cpus_per_worker=1, gpus_per_worker=0.25, driver_cpus=0.01)
    # 4 CPUs - the drivers that may sit there: 3 one-CPU workers per node, not 4
    assert not plan.drivers_on_head
    assert plan.concurrent_trials == 3 and plan.workers_per_node == (3, 3)
    assert "every node keeping room for all running trials' drivers" in plan.explain()


@pytest.mark.parametrize(
    "k, folds_per_gpu, gpus, on", [(2, 4, 0.5, 1), (4, 4, 0.25, 1), (5, 4, 0.3333, 2), (4, 2, 0.5, 2), (3, 1, 1.0, 3)]
)
def test_auto_gpus_put_a_trials_folds_on_as_few_gpus_as_hold_them(k, folds_per_gpu, gpus, on):
    nodes = [HEAD, NodeSpec("gpu4", 32, 4, count=2)]
    plan = plan_resources(k, nodes=nodes, gpus_per_worker="auto", folds_per_gpu=folds_per_gpu, driver_cpus=0.01)
    assert plan.gpus_per_worker == gpus
    assert f"on {on} GPU" in plan.gpu_note
    assert plan.concurrent_trials * k <= sum(n.count * w for n, w in zip(plan.nodes, plan.workers_per_node))


def test_fractions_come_from_one_gpu_each():
    # 0.4 GPU: two per GPU (0.8), never five per two GPUs
    plan = plan_resources(2, nodes=[NodeSpec("g", 16, 2, head=True)], cpus_per_worker=1, gpus_per_worker=0.4)
    assert plan.workers_per_node == (4,) and plan.concurrent_trials == 2


def test_auto_gpus_train_on_cpu_without_gpus():
    plan = plan_resources(2, nodes=[NodeSpec("cpu", 4, 0, head=True)], gpus_per_worker="auto", driver_cpus=0.01)
    assert plan.gpus_per_worker == 0 and "no GPUs" in plan.gpu_note


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"gpus_per_worker": 0.5},
            (
                r"one trial needs 1 GPUs \(2 fold workers x 0.5\) but no node of the cluster has a "
                r"GPU \(head: 1 x \(8 CPU, 0 GPU\)\); set resources.gpus_per_worker: 0"
            ),
        ),
        (
            {"gpus_per_worker": 2},
            (
                r"needs 4 GPUs .* hold 0 such workers at once .* set resources.gpus_per_worker <= 0.5 "
                r"\(folds then share GPUs\)"
            ),
        ),
        ({"gpus_per_worker": "auto", "folds_per_gpu": 1}, r"raise resources.folds_per_gpu \(now 1\) to 2"),
        ({"gpus_per_worker": 1.5}, r"gpus_per_worker = 1.5 is not accepted"),
        ({"placement": "strict"}, r"resources.placement = 'strict' is not accepted; use one of spread, pack"),
    ],
)
def test_impossible_demands_are_refused_saying_what_to_change(kwargs, message):
    nodes = [HEAD] if kwargs.get("gpus_per_worker") == 0.5 else [HEAD, NodeSpec("gpu", 8, 1, count=1)]
    with pytest.raises(ConfigError, match=message):
        plan_resources(2, nodes=nodes, driver_cpus=0.01, **kwargs)


def test_explain_lists_each_node_type_and_where_workers_go():
    plan = plan_resources(2, nodes=[HEAD, NodeSpec("gpu", 8, 1, count=2)], gpus_per_worker=0.5, driver_cpus=0.01)
    text = plan.explain()
    assert "cluster: 24 CPUs, 2 GPUs on 3 nodes" in text
    assert [ln.split()[:5] for ln in text.splitlines() if ln.startswith(("  head", "  gpu"))] == [
        ["head", "1", "8", "0", "0"],
        ["gpu", "2", "8", "1", "2"],
    ]
    assert "0 (no GPU)" in text and "placement spread, on gpu;" in text
