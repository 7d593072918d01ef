"""The Ray runtime under every stage: start-up, the cluster's nodes, resource plans, Ray's logs.

Training, search and distillation drive Ray through this package: :func:`ensure_ray`
connects to a cluster or starts a local Ray, :func:`ray_nodes` reads the cluster's node
types, :func:`plan_resources` sizes a trial's fold workers and the trials that run at once,
and :func:`ray_logs_to` keeps Ray's own log lines out of the terminal. Every private Ray
access ferray makes is named in :mod:`ferray.runtime.compat`, with its fallback.

>>> from ferray.runtime import NodeSpec, plan_resources
>>> plan = plan_resources(2, nodes=[NodeSpec("head", 8), NodeSpec("gpu", 8, 1, count=2)], gpus_per_worker=0.5)
>>> plan.concurrent_trials, plan.workers_per_node
(2, (0, 2))
"""

# Exports load on first use: ``ferray.training.config`` checks GPU shares with the planner
# and must not pay for Ray.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "ensure_ray": "ferray.runtime.startup",
    "use_train_environment": "ferray.runtime.startup",
    "NodeSpec": "ferray.runtime.nodes",
    "ray_nodes": "ferray.runtime.nodes",
    "nodes_from_ray": "ferray.runtime.nodes",
    "nodes_from_launcher": "ferray.runtime.nodes",
    "ResourcePlan": "ferray.runtime.planner",
    "plan_resources": "ferray.runtime.planner",
    "StartupEstimate": "ferray.runtime.planner",
    "estimate_startup": "ferray.runtime.planner",
    "ray_logs_to": "ferray.runtime.logs",
    "ray_session_usage": "ferray.runtime.logs",
    "clean_ray_sessions": "ferray.runtime.logs",
    "RayCompatError": "ferray.runtime.compat",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.runtime.compat import RayCompatError
    from ferray.runtime.logs import clean_ray_sessions, ray_logs_to, ray_session_usage
    from ferray.runtime.nodes import NodeSpec, nodes_from_launcher, nodes_from_ray, ray_nodes
    from ferray.runtime.planner import ResourcePlan, StartupEstimate, estimate_startup, plan_resources
    from ferray.runtime.startup import ensure_ray, use_train_environment
