"""Planning a sweep before Ray starts: resources, trial configs, run folders, the dry run."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ferray.errors import ConfigError
from ferray.run.layout import check_run_name
from ferray.run.spec import SearchSpec, load_search_spec
from ferray.runtime.nodes import NodeSpec, cluster_nodes, launcher_nodes, node_totals
from ferray.runtime.planner import ResourcePlan, estimate_startup, plan_resources
from ferray.search._warm import decide, describe, open_sources, with_sources
from ferray.training.config import TrainConfig

__all__ = [
    "DRIVER_CPUS",
    "trial_config",
    "plan_search_resources",
    "default_run_dir",
    "dry_run",
    "is_uri",
    "as_spec",
    "objectives_text",
]


#: CPUs each trial's driver (the Tune function that starts its fold workers) holds. Not 0:
#: a Tune placement group cannot have an empty bundle. Small, so the fold workers get the
#: rest; the resource plan counts it so k workers plus the driver always fit together.
DRIVER_CPUS = 0.01


def trial_config(base: dict, params: dict) -> TrainConfig:
    """The validated training config of one trial: ``base`` with the dotted ``params`` set.

    Raises:
        ConfigError: the combination is not a valid training config (names each key).
    """
    from ferray._config import validate_model
    from ferray.search._space import apply_params

    return validate_model(TrainConfig, apply_params(base, params))


def plan_search_resources(
    spec: SearchSpec,
    k: int,
    cluster_cpus: float = 0.0,
    cluster_gpus: float = 0.0,
    *,
    nodes: Sequence[NodeSpec] | None = None,
) -> ResourcePlan:
    """The resource plan of a sweep: a driver of :data:`DRIVER_CPUS` plus ``k`` fold workers per trial.

    Planned against ``nodes`` (the cluster's node types, :func:`~ferray.runtime.nodes.cluster_nodes`) or, without
    them, one node of ``cluster_cpus`` and ``cluster_gpus``. Without
    ``resources.cpus_per_worker`` and without GPUs, ``budget.max_concurrent`` trials share the
    CPUs (overlapping one trial's start-up with another's compute); otherwise the plan gives
    one trial the machine (see :func:`ferray.runtime.plan_resources`). Trials
    beyond those whose fold workers get a whole CPU each only overlap start-ups with
    training, so the plan runs them only where that pays (:class:`StartupEstimate`): on a
    CPU-bound machine, starting a trial must not take more from the running ones than it saves.

    Raises:
        ConfigError: a trial could never be placed on this cluster (the message says what to change).
    """
    res = spec.resources
    if nodes is not None:
        cluster_cpus = node_totals(nodes)[0]
    wanted = spec.budget.max_concurrent
    startup = estimate_startup(k, cluster_cpus) if cluster_cpus > 0 else None
    asked = None
    share_among = 1
    if res.cpus_per_worker is None and not res.gpus_per_worker and wanted and wanted > 1:
        whole = max(1, math.floor(cluster_cpus / k + 1e-9))  # trials whose workers get a whole CPU each
        if wanted > whole and startup is not None and not startup.pays:
            asked, wanted = wanted, whole
        share_among = wanted
    try:
        plan = plan_resources(
            k,
            cluster_cpus,
            cluster_gpus,
            nodes=nodes,
            cpus_per_worker=res.cpus_per_worker,
            gpus_per_worker=res.gpus_per_worker,
            folds_per_gpu=res.folds_per_gpu,
            driver_cpus=DRIVER_CPUS,
            max_concurrent=wanted,
            share_among=share_among,
            placement=res.placement,
        )
    except ConfigError as exc:
        raise ConfigError(f"this sweep can never be placed: {exc}") from None
    return replace(plan, startup=startup, asked_concurrent=asked)


def default_run_dir(spec: SearchSpec, storage: str | os.PathLike = "runs", name: str | None = None) -> Path:
    """``<storage>/<name>``, the name defaulting to ``<spec name>-<date-time>``."""
    if name is not None:
        check_run_name(name)
    return Path(storage) / (name or f"{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def as_spec(spec: SearchSpec | str | os.PathLike) -> tuple[SearchSpec, Path | None]:
    if isinstance(spec, SearchSpec):
        return spec, None
    return load_search_spec(spec), Path(spec)


def objectives_text(spec: SearchSpec, *, modes: bool = False) -> str:
    """What the sweep optimises, in words: ``fold-mean accuracy`` (``modes``: ``... (max)``) or
    ``accuracy (max), latency_ms (min)``."""
    if not spec.search.objectives:
        return f"fold-mean {spec.metric}" + (f" ({spec.mode})" if modes else "")
    return ", ".join(f"{o.metric} ({o.mode})" for o in spec.search.objectives)


def dry_run(
    spec: SearchSpec | str | os.PathLike,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    data: str | None = None,
    cluster_config: str | os.PathLike | None = None,
    warm_start: Sequence[str] = (),
) -> str:
    """What a sweep would do, as text: the resolved spec, the fold plan and the resource plan.

    Loads the data (so data problems show now) but trains nothing; says what a warm start
    would take from each of its sources. The resource plan is made
    against the nodes of the Ray cluster at ``address`` (or the connected one), of a cluster
    launcher YAML (``cluster_config``, each node type at its maximum), or of this machine.

    Raises:
        ConfigError: invalid spec, or a trial that could never be placed.
        DataError: unusable data.
    """
    import yaml

    from ferray.training import load_data, make_fold_plan

    spec, _ = as_spec(spec)
    if data is not None:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"source": str(data)})})
    if warm_start:
        spec = with_sources(spec, warm_start)
    sources = open_sources(spec.search.warm_start.sources)
    resolved = spec.model_dump(mode="json", exclude={"space"})
    lines = [
        f"# search spec '{spec.name}' (resolved, defaults filled in)",
        yaml.safe_dump(resolved, sort_keys=False).rstrip(),
        "",
        f"space ({len(spec.space)} parameters):",
    ]
    lines += [f"  {k}: {p.describe()}" for k, p in spec.space.items()]
    sampler = (
        "random"
        if spec.search.sampler == "random"
        else (f"TPE (seed {spec.search.seed}, multivariate {spec.search.multivariate})")
    )
    asha = "multi-objective ASHA" if spec.search.multi_objective else "ASHA"
    stopper = (
        (
            f"{asha} on epochs: grace {spec.budget.grace_period}, reduction factor "
            f"{spec.budget.reduction_factor:g}, max {spec.budget.max_epochs}"
        )
        if spec.budget.early_stopping
        else "none (every trial runs max_epochs)"
    )
    lines += [
        "",
        f"search: {spec.budget.trials} trials, {sampler}, optimising {objectives_text(spec, modes=True)}; "
        f"early stopping: {stopper}",
    ]
    data = load_data(spec.base_config())
    plan = make_fold_plan(spec.base_config(), data)
    lines += [
        "",
        f"data: {data.origin if hasattr(data, 'origin') else spec.data.source}: {len(data)} images",
        "fold plan:",
        plan.summary(data),
    ]
    if sources:
        lines += ["", *describe([decide(source, spec, plan.data_fingerprint) for source in sources])]
    nodes, where = launcher_nodes(cluster_config) if cluster_config is not None else cluster_nodes(address, num_cpus)
    rplan = plan_search_resources(spec, plan.k, nodes=nodes)
    lines += ["", f"resource plan (from {where}):", rplan.explain()]
    return "\n".join(lines)
