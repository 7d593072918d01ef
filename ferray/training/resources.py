"""Resource planning: how much each fold worker asks for, and how many trials fit at once.

A trial is ``k`` fold workers plus, inside a search, one trial driver. Ray places the
driver first and the fold workers afterwards; if the drivers of running trials hold the
CPUs their own workers need, every trial waits forever and Ray says nothing. The plan
below makes that impossible: it admits only as many trials at once as can place their
whole demand, and refuses a configuration that can never be placed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ferray.errors import ConfigError

__all__ = ["ResourcePlan", "plan_resources", "RESOURCE_QUANTUM"]

#: Ray tracks fractional resources in units of 1e-4.
RESOURCE_QUANTUM = 1e-4


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
