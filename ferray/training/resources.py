"""Resource planning: how much each fold worker asks for, and how many trials fit at once.

A trial is ``k`` fold workers plus, inside a search, one trial driver. Ray places the
driver first and the fold workers afterwards; if the drivers of running trials hold the
CPUs their own workers need, every trial waits forever and Ray says nothing. The plan
below makes that impossible: it admits only as many trials at once as can place their
whole demand, and refuses a configuration that can never be placed.

Starting a trial costs CPU too (each of its Python processes imports Ray and torch, the fold
workers also timm and albumentations): :class:`StartupEstimate` says how much, and a sweep's
planner runs a trial beyond those the CPUs hold only when starting it while others train
saves more than it takes from them (:func:`ferray.search.plan_search_resources`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ferray.errors import ConfigError

__all__ = ["ResourcePlan", "plan_resources", "RESOURCE_QUANTUM", "StartupEstimate", "estimate_startup",
           "STARTUP_WORKER_CPU_S", "STARTUP_TRIAL_CPU_S", "STARTUP_WAIT_S"]

#: Ray tracks fractional resources in units of 1e-4.
RESOURCE_QUANTUM = 1e-4

# A trial's start-up, from benchmarks/bench_startup.py (2 cores, Ray 2.60, torch 2.14, timm 1.0):
#: CPU seconds one fold worker spends before its first training step (Ray, torch, the
#: process-group rendezvous, timm, albumentations, ferray, the model and the first batch);
STARTUP_WORKER_CPU_S = 6.0
#: CPU seconds of a trial's other processes: the Tune trial function and Ray Train's controller
#: (both import torch: Train's TorchConfig lives in ``ray.train.torch``);
STARTUP_TRIAL_CPU_S = 7.0
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


def _floor_q(x: float) -> float:
    return math.floor(x / RESOURCE_QUANTUM + 1e-6) * RESOURCE_QUANTUM


@dataclass(frozen=True)
class ResourcePlan:
    """Resources of one trial and how many trials run concurrently."""

    k: int
    cluster_cpus: float
    cluster_gpus: float
    cpus_per_worker: float
    gpus_per_worker: float
    driver_cpus: float
    concurrent_trials: int
    threads_per_worker: int
    #: A sweep's start-up estimate (None for ``ferray train``), and the trials at once the
    #: spec asked for when the planner ran fewer because overlapping start-ups did not pay.
    startup: StartupEstimate | None = None
    asked_concurrent: int | None = None

    @property
    def trial_cpus(self) -> float:
        """CPUs one trial holds: its driver and its k fold workers."""
        return self.driver_cpus + self.k * self.cpus_per_worker

    @property
    def trial_gpus(self) -> float:
        return self.k * self.gpus_per_worker

    def to_dict(self) -> dict:
        return {**asdict(self), "trial_cpus": self.trial_cpus, "trial_gpus": self.trial_gpus}

    def explain(self) -> str:
        """A few lines for ``--dry-run``: what each trial holds and why this many run at once."""
        gpu = f", {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        lines = [
            f"cluster: {self.cluster_cpus:g} CPUs, {self.cluster_gpus:g} GPUs",
            f"one trial: driver {self.driver_cpus:g} CPU + {self.k} fold workers x "
            f"({self.cpus_per_worker:g} CPU{gpu}) = {self.trial_cpus:g} CPUs"
            + (f", {self.trial_gpus:g} GPUs" if self.trial_gpus else ""),
            f"torch threads per fold worker: {self.threads_per_worker}",
            f"trials at once: {self.concurrent_trials} (each trial's whole demand fits, so no "
            "trial's workers wait on CPUs another trial's driver holds)",
        ]
        if self.startup is not None:
            s = self.startup
            lines.append(f"start-up per trial (estimate): {s.cpu_s:g} CPU-s, {s.alone_s:g} s alone; one starting "
                         f"while others train takes ~{s.cost_s:.1f} s from them and saves ~{s.saving_s:.1f} s ("
                         + ("worth it" if s.pays else "not worth it") + ")")
            if self.asked_concurrent is not None:
                lines.append(f"  -> {self.concurrent_trials} at once, not the {self.asked_concurrent} asked: on "
                             f"{self.cluster_cpus:g} CPUs an extra trial's start-up costs the running trials more "
                             "than it saves (set resources.cpus_per_worker to share the CPUs anyway)")
        return "\n".join(lines)


def plan_resources(
    k: int,
    cluster_cpus: float,
    cluster_gpus: float = 0.0,
    *,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float = 0.0,
    driver_cpus: float = 0.0,
    max_concurrent: int | None = None,
) -> ResourcePlan:
    """Plan one trial's resources and the number of concurrent trials.

    Args:
        k: fold workers per trial.
        cluster_cpus, cluster_gpus: what the Ray cluster has.
        cpus_per_worker: CPUs each fold worker asks for; ``None`` shares the cluster's CPUs
            (after the drivers) among the k workers of one trial.
        gpus_per_worker: GPUs each fold worker asks for (fractions share a GPU).
        driver_cpus: CPUs the trial driver holds (a Tune trial; 0 for ``ferray train``).
        max_concurrent: an upper bound on concurrent trials from the user.

    Raises:
        ConfigError: the trial can never be placed on this cluster.

    >>> plan_resources(3, cluster_cpus=2, driver_cpus=0.01).cpus_per_worker
    0.663
    """
    if k < 1:
        raise ConfigError(f"k = {k} fold workers is not accepted; it must be >= 1")
    if cluster_cpus <= 0:
        raise ConfigError("the Ray cluster reports no CPUs; start it with num_cpus >= 1")
    if cpus_per_worker is None:
        # With GPUs the GPU count bounds concurrency: share the CPUs among those trials.
        # Without, give one trial the whole cluster (fold parallelism before trial parallelism).
        trials = 1
        if gpus_per_worker > 0 and cluster_gpus > 0:
            trials = max(1, math.floor((cluster_gpus + 1e-9) / (k * gpus_per_worker)))
        share = _floor_q((cluster_cpus - trials * driver_cpus) / (trials * k))
        # Whole CPUs where there are enough; else thousandths, rounded down so the sum fits.
        cpus_per_worker = math.floor(share) if share >= 1 else math.floor(share * 1000) / 1000
        if gpus_per_worker > 0:
            cpus_per_worker = min(cpus_per_worker, 4.0)
    if cpus_per_worker <= 0:
        raise ConfigError(
            f"no CPUs are left for {k} fold workers: the cluster has {cluster_cpus:g} CPUs and the "
            f"trial driver holds {driver_cpus:g}"
        )
    trial_cpus = driver_cpus + k * cpus_per_worker
    if trial_cpus > cluster_cpus + 1e-9:
        raise ConfigError(
            f"one trial needs {trial_cpus:g} CPUs (driver {driver_cpus:g} + {k} fold workers x "
            f"{cpus_per_worker:g}) but the cluster has {cluster_cpus:g}: it could never start. "
            f"Set resources.cpus_per_worker <= {_floor_q((cluster_cpus - driver_cpus) / k):g} "
            "or use fewer folds"
        )
    trial_gpus = k * gpus_per_worker
    if trial_gpus > cluster_gpus + 1e-9:
        raise ConfigError(
            f"one trial needs {trial_gpus:g} GPUs ({k} fold workers x {gpus_per_worker:g}) but the "
            f"cluster has {cluster_gpus:g}; set resources.gpus_per_worker <= "
            f"{(cluster_gpus / k) if cluster_gpus else 0:g}"
            + (" (0 trains on CPU)" if not cluster_gpus else "")
        )
    concurrent = math.floor((cluster_cpus + 1e-9) / trial_cpus)
    if trial_gpus > 0:
        concurrent = min(concurrent, math.floor((cluster_gpus + 1e-9) / trial_gpus))
    if max_concurrent is not None:
        if max_concurrent < 1:
            raise ConfigError(f"max_concurrent = {max_concurrent} is not accepted; it must be >= 1")
        concurrent = min(concurrent, max_concurrent)
    return ResourcePlan(
        k=k,
        cluster_cpus=float(cluster_cpus),
        cluster_gpus=float(cluster_gpus),
        cpus_per_worker=float(cpus_per_worker),
        gpus_per_worker=float(gpus_per_worker),
        driver_cpus=float(driver_cpus),
        concurrent_trials=max(1, concurrent),
        threads_per_worker=max(1, math.floor(cpus_per_worker + 1e-9)),
    )
