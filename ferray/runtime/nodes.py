"""The nodes of a Ray cluster, as the resource planner sees them.

:class:`NodeSpec` is one kind of node (its CPUs and GPUs, how many of it). The node types
come from the cluster this process is connected to (:func:`ray_nodes`, read from Ray's public
``ray.nodes()`` and, on an autoscaling cluster, its node groups at their maxima) or from a
Ray cluster launcher config (:func:`nodes_from_launcher`), before any machine starts.
:func:`cluster_nodes` and :func:`launcher_nodes` are what a dry run plans against.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ferray.errors import ConfigError
from ferray.runtime.startup import ensure_ray

__all__ = [
    "NodeSpec",
    "HEAD_RESOURCE",
    "node_totals",
    "nodes_from_ray",
    "ray_nodes",
    "with_node_groups",
    "nodes_from_launcher",
    "cluster_nodes",
    "launcher_nodes",
]

#: The resource Ray gives the head node only (``ray._common.constants.HEAD_NODE_RESOURCE_NAME``).
HEAD_RESOURCE = "node:__internal_head__"


@dataclass(frozen=True)
class NodeSpec:
    """One kind of Ray node: its CPUs and GPUs, and how many such nodes the cluster has (or scales to)."""

    name: str
    cpus: float
    gpus: float = 0.0
    count: int = 1
    head: bool = False

    def describe(self) -> str:
        return f"{self.name}: {self.count} x ({self.cpus:g} CPU, {self.gpus:g} GPU)"


def node_totals(nodes: Iterable[NodeSpec]) -> tuple[float, float]:
    """The CPUs and GPUs of all the nodes together."""
    nodes = list(nodes)
    return float(sum(n.cpus * n.count for n in nodes)), float(sum(n.gpus * n.count for n in nodes))


def nodes_from_ray(table: Iterable[Mapping]) -> list[NodeSpec]:
    """The alive nodes of ``ray.nodes()``, grouped into node types.

    A node's type is its launcher/KubeRay group (label ``ray.io/node-group``) when it has one,
    else ``head`` or ``worker``; nodes of one type with different resources are told apart
    by their CPUs and GPUs.
    """
    groups: dict[tuple, int] = {}
    for node in table:
        if not node.get("Alive", False):
            continue
        res = node.get("Resources") or {}
        labels = node.get("Labels") or {}
        head = HEAD_RESOURCE in res
        name = labels.get("ray.io/node-group") or ("head" if head else "worker")
        accel = sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))
        if accel and name == "worker":
            name = f"worker ({', '.join(accel)})"
        key = (head, name, float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0)))
        groups[key] = groups.get(key, 0) + 1
    return [
        NodeSpec(name, cpus, gpus, count, head)
        for (head, name, cpus, gpus), count in sorted(
            groups.items(), key=lambda kv: (not kv[0][0], kv[0][1], kv[0][2], kv[0][3])
        )
    ]


def ray_nodes() -> list[NodeSpec]:
    """The node types of the Ray cluster this process is connected to (Ray's public ``ray.nodes()``).

    On an autoscaling cluster, the worker node groups at their ``max_count`` instead of the
    worker nodes up now (:func:`with_node_groups`).
    """
    import ray

    from ferray.runtime.compat import autoscaler_node_groups

    return with_node_groups(nodes_from_ray(ray.nodes()), autoscaler_node_groups())


def with_node_groups(live: Sequence[NodeSpec], groups: Sequence[Mapping] | None) -> list[NodeSpec]:
    """The live head node(s) plus each autoscaler worker group at its ``max_count`` (``live`` without groups).

    A group of ``max_count`` 0 (the head's, on the cluster launcher) or whose name is the
    head's holds no worker that can be added.
    """
    scalable = [
        g
        for g in groups or ()
        if int(g.get("max_count", 0)) > 0 and not any(n.head and n.name == g.get("name") for n in live)
    ]
    if not scalable:
        return list(live)
    nodes = [n for n in live if n.head]
    for g in scalable:
        res = g.get("resources") or {}
        nodes.append(
            NodeSpec(str(g.get("name")), float(res.get("CPU", 0)), float(res.get("GPU", 0)), int(g["max_count"]))
        )
    return nodes


def nodes_from_launcher(config: Mapping, source: str = "cluster config") -> list[NodeSpec]:
    """The node types of a Ray cluster launcher config, each at its ``max_workers`` (the head: one).

    The plan is then the one of a cluster scaled up to every type's maximum.

    Raises:
        ConfigError: a node type does not declare its ``resources`` (``CPU``, and ``GPU`` where it has some).
    """
    types = config.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        raise ConfigError(f"{source}: available_node_types is missing; the resource plan needs the node types")
    head = config.get("head_node_type")
    nodes = []
    for name, node in types.items():
        res = (node or {}).get("resources") or {}
        if "CPU" not in res:
            raise ConfigError(
                f"{source}: available_node_types.{name}.resources has no CPU; declare the node "
                "type's resources, e.g. resources: {CPU: 8, GPU: 1}, so the plan can count them"
            )
        count = 1 if name == head else int(node.get("max_workers", 0))
        if count > 0:
            nodes.append(NodeSpec(str(name), float(res["CPU"]), float(res.get("GPU", 0)), count, name == head))
    return nodes


def cluster_nodes(address: str | None = None, num_cpus: int | None = None) -> tuple[list[NodeSpec], str]:
    """The node types a sweep would run on, and where they were read from.

    The connected or addressed Ray cluster's alive nodes (``ray.nodes()``), else this machine
    as one node (``num_cpus`` CPUs, default all; the GPUs torch sees).
    """
    import ray

    if ray.is_initialized() or address or os.environ.get("RAY_ADDRESS"):
        ensure_ray(address, num_cpus=num_cpus)
        nodes = ray_nodes()
        where = (
            f"the Ray cluster at {address or os.environ.get('RAY_ADDRESS') or ray.get_runtime_context().gcs_address}"
        )
        if not nodes:
            raise ConfigError(f"{where} reports no alive nodes")
        return nodes, where
    import torch

    return [
        NodeSpec("this machine", float(num_cpus or os.cpu_count() or 1), float(torch.cuda.device_count()))
    ], "this machine"


def launcher_nodes(path: str | os.PathLike) -> tuple[list[NodeSpec], str]:
    """The node types of a Ray cluster launcher YAML, each at its ``max_workers``."""
    from ferray._config import load_yaml

    return nodes_from_launcher(load_yaml(path), str(path)), f"{path}, every node type at its max_workers"
