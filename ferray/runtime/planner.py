"""Resource planning: how much each fold worker asks for, and how many trials fit at once.

A trial is ``k`` fold workers plus, inside a search, one trial driver. Ray places the
driver first and the fold workers afterwards; if the drivers of running trials hold the
CPUs their own workers need, every trial waits forever and Ray says nothing. The plan
below makes that impossible: it admits only as many trials at once as can place their
whole demand, and refuses a configuration that can never be placed.

The plan is made against the cluster's nodes (:class:`~ferray.runtime.nodes.NodeSpec`), not its totals: a fold
worker that asks for 1 CPU and 0.5 GPU fits only on a node that has both, a fraction of a
GPU comes from one GPU (Ray splits each GPU separately), and every node keeps room for the
drivers of all running trials, since Ray may put any of them on any node.

Starting a trial costs CPU too (each of its Python processes imports Ray and torch, the fold
workers also timm and albumentations): :class:`StartupEstimate` says how much, and a sweep's
planner runs a trial beyond those the CPUs hold only when starting it while others train
saves more than it takes from them (:func:`ferray.search.plan_search_resources`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ferray.errors import ConfigError
from ferray.runtime.nodes import HEAD_RESOURCE, NodeSpec, node_totals

__all__ = [
    "ResourcePlan",
    "plan_resources",
    "RESOURCE_QUANTUM",
    "StartupEstimate",
    "estimate_startup",
    "STARTUP_WORKER_CPU_S",
    "STARTUP_TRIAL_CPU_S",
    "STARTUP_WAIT_S",
    "gpu_share_problem",
    "PLACEMENTS",
]

#: Ray tracks fractional resources in units of 1e-4.
RESOURCE_QUANTUM = 1e-4

# A trial's start-up, from benchmarks/bench_startup.py (2 cores, Ray 2.60, torch 2.14, timm 1.0):
#: CPU seconds one fold worker spends before its first training step (Ray, torch, the
#: process-group rendezvous, timm, albumentations, ferray, the model and the first batch);
STARTUP_WORKER_CPU_S = 6.0
#: CPU seconds of a trial's other processes: the Tune trial function and Ray Train's controller
#: (Ray, Tune and Train; no torch since the fold workers' process group is ferray's own backend,
#: which spared each of the two about 1.5 CPU-s);
STARTUP_TRIAL_CPU_S = 4.0
#: seconds a start waits rather than computes (placement group, actor creation, rendezvous).
STARTUP_WAIT_S = 6.0


@dataclass(frozen=True)
class StartupEstimate:
    """What starting one trial costs, and whether starting it while other trials train pays.

    A trial that starts while others train takes ``cpu_s / cluster_cpus`` seconds from them
    (:attr:`cost_s`: its imports share the CPUs) and hides the rest of its own start-up,
    ``alone_s - cost_s`` (:attr:`saving_s`). It pays when the saving is at least the cost.

    >>> estimate_startup(k=2, cluster_cpus=16).pays
    True
    >>> estimate_startup(k=2, cluster_cpus=1).pays
    False
    """

    cpu_s: float  # CPU seconds all of one trial's processes spend starting
    alone_s: float  # wall seconds from trial start to first step on an otherwise idle cluster
    cluster_cpus: float

    @property
    def cost_s(self) -> float:
        return self.cpu_s / self.cluster_cpus

    @property
    def saving_s(self) -> float:
        return max(0.0, self.alone_s - self.cost_s)

    @property
    def pays(self) -> bool:
        return self.cost_s <= self.saving_s + 1e-9


def estimate_startup(k: int, cluster_cpus: float) -> StartupEstimate:
    """The start-up of a trial with ``k`` fold workers on ``cluster_cpus`` CPUs (estimates above).

    Alone, the trial function and the controller start one after the other and the fold
    workers side by side, ``cluster_cpus`` at a time.
    """
    cpus = max(1.0, float(cluster_cpus))
    return StartupEstimate(
        cpu_s=STARTUP_TRIAL_CPU_S + k * STARTUP_WORKER_CPU_S,
        alone_s=STARTUP_WAIT_S + STARTUP_TRIAL_CPU_S + STARTUP_WORKER_CPU_S * math.ceil(k / cpus - 1e-9),
        cluster_cpus=cpus,
    )


def _units(x: float) -> int:
    """``x`` in Ray's resource units (1e-4), rounded down."""
    return math.floor(x / RESOURCE_QUANTUM + 1e-6)


def _floor_q(x: float) -> float:
    """``x`` rounded down to Ray's resource unit."""
    return round(_units(x) * RESOURCE_QUANTUM, 4)


#: ``resources.placement`` values and Ray Train's ``ScalingConfig(placement_strategy=...)`` for each.
PLACEMENTS = {"spread": "SPREAD", "pack": "PACK"}


def _gpu_slots(node: NodeSpec, gpus_per_worker: float) -> int:
    """Fold workers of ``gpus_per_worker`` one such node holds by its GPUs (fractions from one GPU each)."""
    if gpus_per_worker <= 0:
        return 1 << 30
    whole = math.floor(node.gpus + 1e-6)
    if gpus_per_worker <= 1:
        return whole * (_units(1.0) // _units(gpus_per_worker))
    return math.floor(whole / gpus_per_worker + 1e-6)


def _gpu_capacity(nodes: Sequence[NodeSpec], gpus_per_worker: float) -> int:
    """Fold workers of ``gpus_per_worker`` all the nodes hold by their GPUs."""
    return sum(n.count * _gpu_slots(n, gpus_per_worker) for n in nodes)


def _node_slots(node: NodeSpec, cpus_per_worker: float, gpus_per_worker: float, reserve: float) -> int:
    """Fold workers one such node holds, after ``reserve`` CPUs for trial drivers."""
    cpus = _units(node.cpus) - _units(reserve)
    if cpus <= 0:
        return 0
    return min(cpus // max(1, _units(cpus_per_worker)), _gpu_slots(node, gpus_per_worker))


def gpu_share_problem(value: float) -> str | None:
    """Why ``value`` is no GPU share Ray can give a fold worker (a fraction of one GPU or whole GPUs), else None."""
    if value < 0 or (value > 1 and abs(value - round(value)) > 1e-9):
        return (
            f"{value:g} is not accepted: a fold worker takes a fraction of one GPU (0 < value <= 1, e.g. 0.5), "
            "whole GPUs (1, 2, ...), 0 (CPU) or auto"
        )
    return None


@dataclass(frozen=True)
class ResourcePlan:
    """Resources of one trial and how many trials run concurrently."""

    k: int
    #: The node types planned against, and the fold workers each node of a type holds while
    #: ``concurrent_trials`` trials run (0: the type holds no fold worker).
    nodes: tuple[NodeSpec, ...]
    workers_per_node: tuple[int, ...]
    cpus_per_worker: float
    gpus_per_worker: float
    driver_cpus: float
    concurrent_trials: int
    #: A sweep's start-up estimate (None for ``ferray train``), and the trials at once the
    #: spec asked for when the planner ran fewer because overlapping start-ups did not pay.
    startup: StartupEstimate | None = None
    asked_concurrent: int | None = None
    #: ``spread`` or ``pack``: how a trial's fold workers are placed (``resources.placement``).
    placement: str = "spread"
    #: How ``gpus_per_worker: auto`` was resolved (None when given as a number).
    gpu_note: str | None = None
    #: Trial drivers are kept on the head node (a cluster of several nodes whose head has CPUs),
    #: so the other nodes give their CPUs to fold workers only.
    drivers_on_head: bool = False

    @property
    def cluster_cpus(self) -> float:
        return node_totals(self.nodes)[0]

    @property
    def cluster_gpus(self) -> float:
        return node_totals(self.nodes)[1]

    @property
    def threads_per_worker(self) -> int:
        """Torch threads per fold worker: its whole CPUs, at least one."""
        return max(1, math.floor(self.cpus_per_worker + 1e-9))

    @property
    def trial_cpus(self) -> float:
        """CPUs one trial holds: its driver and its k fold workers."""
        return self.driver_cpus + self.k * self.cpus_per_worker

    @property
    def trial_gpus(self) -> float:
        return self.k * self.gpus_per_worker

    @property
    def driver_resources(self) -> dict[str, float]:
        """What one trial driver asks Tune for (on a head-pinned plan, a sliver of the head's marker resource)."""
        res = {"CPU": self.driver_cpus}
        if self.drivers_on_head:
            res[HEAD_RESOURCE] = RESOURCE_QUANTUM * 10
        return res

    @property
    def ray_placement(self) -> str:
        """The placement strategy of Ray Train's ``ScalingConfig``."""
        return PLACEMENTS[self.placement]

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "cluster_cpus": self.cluster_cpus,
            "cluster_gpus": self.cluster_gpus,
            "threads_per_worker": self.threads_per_worker,
            "trial_cpus": self.trial_cpus,
            "trial_gpus": self.trial_gpus,
        }

    def explain(self) -> str:
        """A few lines for ``--dry-run``: the nodes, what each trial holds and why this many run at once."""
        gpu = f", {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        n_nodes = sum(n.count for n in self.nodes)
        lines = [
            f"cluster: {self.cluster_cpus:g} CPUs, {self.cluster_gpus:g} GPUs"
            + (f" on {n_nodes} nodes" if n_nodes > 1 else "")
        ]
        if len(self.nodes) > 1 or (self.nodes and self.nodes[0].count > 1):
            width = max(9, *(len(n.name) for n in self.nodes))
            lines.append(f"  {'node type':<{width}}  nodes   CPUs   GPUs  fold workers per node")
            for node, held in zip(self.nodes, self.workers_per_node):
                why = ""
                if not held:
                    why = " (no GPU)" if self.gpus_per_worker and node.gpus <= 0 else " (too small)"
                lines.append(f"  {node.name:<{width}}  {node.count:>5}  {node.cpus:>5g}  {node.gpus:>5g}  {held}{why}")
        lines += [
            f"one trial: driver {self.driver_cpus:g} CPU + {self.k} fold workers x "
            f"({self.cpus_per_worker:g} CPU{gpu}) = {self.trial_cpus:g} CPUs"
            + (f", {self.trial_gpus:g} GPUs" if self.trial_gpus else ""),
        ]
        if self.gpu_note:
            lines.append(f"gpus_per_worker: {self.gpu_note}")
        holding = [n.name for n, held in zip(self.nodes, self.workers_per_node) if held]
        lines += [
            f"fold workers: placement {self.placement}"
            + (f", on {', '.join(holding)}" if holding and len(self.nodes) > 1 else "")
            + f"; torch threads per fold worker: {self.threads_per_worker}",
            f"trials at once: {self.concurrent_trials} (each trial's whole demand fits on the nodes, "
            + (
                "the drivers on the head node"
                if self.drivers_on_head
                else "every node keeping room for all running trials' drivers"
            )
            + ", so no trial's workers wait on what another trial's driver holds)",
        ]
        if self.startup is not None:
            s = self.startup
            lines.append(
                f"start-up per trial (estimate): {s.cpu_s:g} CPU-s, {s.alone_s:g} s alone; one starting "
                f"while others train takes ~{s.cost_s:.1f} s from them and saves ~{s.saving_s:.1f} s ("
                + ("worth it" if s.pays else "not worth it")
                + ")"
            )
            if self.asked_concurrent is not None:
                lines.append(
                    f"  -> {self.concurrent_trials} at once, not the {self.asked_concurrent} asked: on "
                    f"{self.cluster_cpus:g} CPUs an extra trial's start-up costs the running trials more "
                    "than it saves (set resources.cpus_per_worker to share the CPUs anyway)"
                )
        return "\n".join(lines)


class _Cluster:
    """The nodes and one fold worker's GPU share: what fits where (see the module docstring)."""

    def __init__(self, nodes: Sequence[NodeSpec], k: int, gpus_per_worker: float, driver_cpus: float):
        self.nodes, self.k, self.g, self.d = list(nodes), k, gpus_per_worker, driver_cpus
        # On several nodes, drivers stay on the head when it has CPUs (one head node); else Ray
        # may put any driver on any node, and every node keeps room for all of them.
        heads = [n for n in self.nodes if n.head and n.count == 1 and n.cpus > 0]
        many = sum(n.count for n in self.nodes) > 1
        self.head = heads[0] if many and len(heads) == 1 and driver_cpus > 0 else None

    def reserve(self, node: NodeSpec, trials: int) -> float:
        """CPUs a node keeps for the drivers of ``trials`` trials."""
        return trials * self.d if self.head is None or node is self.head else 0.0

    def slots(self, cpus_per_worker: float, trials: int) -> list[int]:
        """Fold workers each node (one of each type) holds while ``trials`` trials run."""
        return [_node_slots(n, cpus_per_worker, self.g, self.reserve(n, trials)) for n in self.nodes]

    def drivers_fit(self, trials: int) -> bool:
        return self.head is None or _units(self.head.cpus) >= _units(trials * self.d)

    def capacity(self, cpus_per_worker: float, trials: int) -> int:
        return sum(n.count * s for n, s in zip(self.nodes, self.slots(cpus_per_worker, trials)))

    def fits(self, cpus_per_worker: float, trials: int) -> bool:
        return self.drivers_fit(trials) and trials * self.k <= self.capacity(cpus_per_worker, trials)

    def gpu_trials(self) -> int:
        """Trials whose fold workers the GPUs hold at once."""
        return _gpu_capacity(self.nodes, self.g) // self.k

    def best_cpus(self, trials: int) -> float | None:
        """The most CPUs per fold worker with which ``trials`` trials fit (None: none does)."""
        workers = trials * self.k
        candidates = set()
        for n in self.nodes:
            avail = _units(n.cpus) - _units(self.reserve(n, trials))
            if avail <= 0 or _gpu_slots(n, self.g) == 0:
                continue
            candidates.update(avail // m for m in range(1, workers + 1))
        for units in sorted(candidates, reverse=True):
            if units > 0 and self.fits(units * RESOURCE_QUANTUM, trials):
                return units * RESOURCE_QUANTUM
        return None


def _resolve_gpus(
    gpus_per_worker: float | str, k: int, folds_per_gpu: int, total_gpus: float
) -> tuple[float, str | None]:
    """``gpus_per_worker`` as a number; ``auto`` packs the k folds onto as few GPUs as hold them."""
    if gpus_per_worker != "auto":
        if isinstance(gpus_per_worker, str):
            raise ConfigError(
                f"resources.gpus_per_worker = {gpus_per_worker!r} is not accepted; give a number "
                "(0.5: two folds share a GPU) or auto"
            )
        problem = gpu_share_problem(float(gpus_per_worker))
        if problem:
            raise ConfigError(f"resources.gpus_per_worker = {problem}")
        return float(gpus_per_worker), None
    if folds_per_gpu < 1:
        raise ConfigError(f"resources.folds_per_gpu = {folds_per_gpu} is not accepted; it must be >= 1")
    if total_gpus <= 0:
        return 0.0, "auto: the cluster has no GPUs, fold workers train on CPU"
    n_gpus = math.ceil(k / folds_per_gpu)
    per_gpu = math.ceil(k / n_gpus)
    gpus = _floor_q(1.0 / per_gpu)
    return gpus, (
        f"auto = {gpus:g}: the {k} folds of a trial on {n_gpus} GPU{'s' if n_gpus > 1 else ''}, "
        f"{per_gpu} per GPU (resources.folds_per_gpu: {folds_per_gpu})"
    )


def _round_share(cpus: float) -> float:
    """Whole CPUs where there are enough; else thousandths, rounded down so the sum still fits."""
    return float(math.floor(cpus + 1e-9)) if cpus >= 1 else math.floor(cpus * 1000 + 1e-6) / 1000


def _max_gpus_per_worker(nodes: Sequence[NodeSpec], k: int) -> float:
    """The largest GPU share per fold worker with which one trial's k workers fit the GPUs (0: none)."""
    options = [float(w) for w in range(8, 0, -1)] + [_floor_q(1.0 / m) for m in range(2, 65)]
    for g in options:
        if _gpu_capacity(nodes, g) >= k:
            return g
    return 0.0


def plan_resources(
    k: int,
    cluster_cpus: float = 0.0,
    cluster_gpus: float = 0.0,
    *,
    nodes: Sequence[NodeSpec] | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | str = 0.0,
    folds_per_gpu: int = 4,
    driver_cpus: float = 0.0,
    max_concurrent: int | None = None,
    share_among: int = 1,
    placement: str = "spread",
) -> ResourcePlan:
    """Plan one trial's resources and the number of concurrent trials.

    Args:
        k: fold workers per trial.
        cluster_cpus, cluster_gpus: what the Ray cluster has, as one node (ignored with ``nodes``).
        nodes: the cluster's node types (:func:`~ferray.runtime.nodes.ray_nodes`,
            :func:`~ferray.runtime.nodes.nodes_from_launcher`).
        cpus_per_worker: CPUs each fold worker asks for; ``None`` shares the CPUs (after the
            drivers) among the k workers of ``share_among`` trials, or of the trials the GPUs hold.
        gpus_per_worker: GPUs each fold worker asks for: a fraction of one GPU (several folds
            share it), whole GPUs, or ``"auto"``: the k folds on as few GPUs as hold them, at
            most ``folds_per_gpu`` on one (0 on a cluster without GPUs).
        driver_cpus: CPUs the trial driver holds (a Tune trial; 0 for ``ferray train``).
        max_concurrent: an upper bound on concurrent trials from the user.
        placement: ``spread`` or ``pack``, how Ray Train places a trial's fold workers.

    Raises:
        ConfigError: the trial can never be placed on this cluster (the message says what to change).

    >>> plan_resources(3, cluster_cpus=2, driver_cpus=0.01).cpus_per_worker
    0.663
    >>> nodes = [NodeSpec("head", 8), NodeSpec("gpu", 8, 1, count=2)]
    >>> plan = plan_resources(2, nodes=nodes, gpus_per_worker=0.5, driver_cpus=0.01)
    >>> plan.concurrent_trials, plan.workers_per_node
    (2, (0, 2))
    """
    if k < 1:
        raise ConfigError(f"k = {k} fold workers is not accepted; it must be >= 1")
    if placement not in PLACEMENTS:
        raise ConfigError(f"resources.placement = {placement!r} is not accepted; use one of {', '.join(PLACEMENTS)}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"max_concurrent = {max_concurrent} is not accepted; it must be >= 1")
    one_node = nodes is None
    nodes = tuple(nodes) if nodes is not None else (NodeSpec("this cluster", float(cluster_cpus), float(cluster_gpus)),)
    total_cpus, total_gpus = node_totals(nodes)
    if total_cpus <= 0:
        raise ConfigError("the Ray cluster reports no CPUs; start it with num_cpus >= 1")
    gpus, gpu_note = _resolve_gpus(gpus_per_worker, k, folds_per_gpu, total_gpus)
    cluster = _Cluster(nodes, k, gpus, driver_cpus)
    if gpus > 0 and cluster.gpu_trials() < 1:
        _refuse_gpus(nodes, k, gpus, total_gpus, gpus_per_worker, folds_per_gpu, one_node)
    if cpus_per_worker is None:
        # With GPUs the GPUs bound concurrency: share the CPUs among those trials. Without,
        # give ``share_among`` trials (one: fold parallelism before trial parallelism) the cluster.
        target = max(1, cluster.gpu_trials() if gpus > 0 else share_among)
        if max_concurrent is not None:
            target = min(target, max_concurrent)
        for trials in range(target, 0, -1):
            best = cluster.best_cpus(trials)
            share = _round_share(best) if best is not None else 0.0
            if gpus > 0:
                share = min(share, 4.0)
            if share > 0:
                cpus_per_worker = share
                break
        else:
            raise ConfigError(
                f"no CPUs are left for {k} fold workers: the cluster has {total_cpus:g} CPUs"
                + (" on the nodes with GPUs" if gpus > 0 else "")
                + f" and the trial driver holds {driver_cpus:g}"
            )
    if cpus_per_worker <= 0:
        raise ConfigError(f"resources.cpus_per_worker = {cpus_per_worker:g} is not accepted; it must be > 0")
    if not cluster.fits(cpus_per_worker, 1):
        _refuse_cpus(cluster, cpus_per_worker, total_cpus, one_node)
    concurrent = 1
    limit = max_concurrent if max_concurrent is not None else 1 << 30
    while concurrent < limit and cluster.fits(cpus_per_worker, concurrent + 1):
        concurrent += 1
    return ResourcePlan(
        k=k,
        nodes=nodes,
        workers_per_node=tuple(cluster.slots(cpus_per_worker, concurrent)),
        cpus_per_worker=float(cpus_per_worker),
        gpus_per_worker=float(gpus),
        driver_cpus=float(driver_cpus),
        concurrent_trials=concurrent,
        placement=placement,
        gpu_note=gpu_note,
        drivers_on_head=cluster.head is not None,
    )


def _refuse_gpus(nodes, k, gpus, total_gpus, asked, folds_per_gpu, one_node) -> None:
    if total_gpus <= 0:
        where = (
            "the cluster has no GPUs"
            if one_node
            else "no node of the cluster has a GPU (" + "; ".join(n.describe() for n in nodes) + ")"
        )
        raise ConfigError(
            f"one trial needs {k * gpus:g} GPUs ({k} fold workers x {gpus:g}) but {where}; set "
            "resources.gpus_per_worker: 0 (0 trains on CPU) or auto, or add GPU nodes"
        )
    best = _max_gpus_per_worker(nodes, k)
    fix = (
        f"set resources.gpus_per_worker <= {best:g}" + (" (folds then share GPUs)" if best < 1 else "")
        if best
        else "use fewer folds"
    )
    if asked == "auto":
        fix = (
            f"raise resources.folds_per_gpu (now {folds_per_gpu}) to {math.ceil(k / math.floor(total_gpus))}"
            if total_gpus >= 1
            else "add GPU nodes"
        )
    where = (
        f"the cluster has {total_gpus:g}"
        if one_node
        else f"the cluster's GPUs hold {_gpu_capacity(nodes, gpus)} such workers at once ("
        + "; ".join(n.describe() for n in nodes if n.gpus)
        + ")"
    )
    raise ConfigError(
        f"one trial needs {k * gpus:g} GPUs ({k} fold workers x {gpus:g}) but {where}; {fix}, or add GPU nodes"
    )


def _refuse_cpus(cluster: _Cluster, cpus_per_worker: float, total_cpus: float, one_node: bool) -> None:
    k, d, g = cluster.k, cluster.d, cluster.g
    need = d + k * cpus_per_worker
    best = cluster.best_cpus(1)
    fix = (
        f"Set resources.cpus_per_worker <= {math.floor(best * 1000 + 1e-6) / 1000:g} or use fewer folds"
        if best
        else "Use fewer folds or bigger nodes"
    )
    each = f"{cpus_per_worker:g}" + (f" (with {g:g} GPU)" if g else "")
    if one_node:
        where = f"the cluster has {total_cpus:g}"
    else:
        held = ", ".join(f"{n.name} {s}" for n, s in zip(cluster.nodes, cluster.slots(cpus_per_worker, 1)))
        keeps = (
            f"the head keeps {d:g} CPU for the driver"
            if cluster.head is not None
            else f"each node keeps {d:g} CPU for the driver"
        )
        where = f"the nodes hold {cluster.capacity(cpus_per_worker, 1)} such workers at once ({held} per node; {keeps})"
    raise ConfigError(
        f"one trial needs {need:g} CPUs (driver {d:g} + {k} fold workers x {each}) but {where}: "
        f"it could never start. {fix}"
    )
