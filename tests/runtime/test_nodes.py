"""A cluster's node types: from Ray's node table, a launcher config, an autoscaler's node groups."""

import pytest

from ferray.errors import ConfigError
from ferray.runtime.nodes import NodeSpec, nodes_from_launcher, nodes_from_ray, with_node_groups
from ferray.runtime.planner import plan_resources


def test_nodes_are_read_from_rays_node_table_and_a_launcher_config():
    table = [
        {"Alive": True, "Resources": {"CPU": 2.0, "node:__internal_head__": 1.0, "memory": 1e9}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0, "accelerator_type:T4": 1.0}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0, "accelerator_type:T4": 1.0}},
        {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": True, "Resources": {"CPU": 32.0, "GPU": 4.0}, "Labels": {"ray.io/node-group": "big"}},
    ]
    assert nodes_from_ray(table) == [
        NodeSpec("head", 2, 0, 1, head=True),
        NodeSpec("big", 32, 4, 1),
        NodeSpec("worker (T4)", 8, 1, 2),
    ]
    config = {
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 8, "GPU": 0}, "max_workers": 0},
            "gpu": {"resources": {"CPU": 48, "GPU": 4}, "min_workers": 0, "max_workers": 3},
        },
    }
    assert nodes_from_launcher(config) == [NodeSpec("head", 8, 0, 1, head=True), NodeSpec("gpu", 48, 4, 3)]
    del config["available_node_types"]["gpu"]["resources"]["CPU"]
    with pytest.raises(ConfigError, match=r"c.yaml: available_node_types.gpu.resources has no CPU"):
        nodes_from_launcher(config, "c.yaml")


def test_an_autoscaling_cluster_is_planned_at_its_node_groups_maxima():
    live = [NodeSpec("head", 4, 0, head=True)]  # no GPU node up yet: the cluster scales from zero
    groups = [
        {"name": "headgroup", "resources": {"CPU": 4}, "max_count": 0},
        {"name": "gpu", "resources": {"CPU": 8, "GPU": 1}, "max_count": 4},
    ]
    nodes = with_node_groups(live, groups)
    assert nodes == [NodeSpec("head", 4, 0, head=True), NodeSpec("gpu", 8, 1, 4)]
    plan = plan_resources(2, nodes=nodes, gpus_per_worker=1, cpus_per_worker=8, driver_cpus=0.01)
    assert plan.concurrent_trials == 2 and plan.workers_per_node == (0, 1)
    assert with_node_groups(live, None) == live
