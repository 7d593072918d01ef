"""Everything ferray takes from Ray that is not Ray's public API, in one place.

Each entry says what ferray uses, why no public API does it, and what happens when a
Ray release moves it: a named fallback, or a clear error before any trial starts.
:func:`check` verifies every entry against the installed Ray (``ferray doctor`` prints the
result, ``ferray search`` prints a one-line summary and refuses to start when a required
entry is missing); ``tests/runtime/test_compat.py`` runs it, so CI fails when an upgrade breaks
one. ferray is tested with the Ray versions in :data:`TESTED_RAY` (pinned in
``pyproject.toml``).

Public APIs ferray uses instead of internals where Ray has them: ``ray.tune.report`` from the
trial function (not ``TuneReportCallback``'s inter-actor queue), ``ray.train.UserCallback``,
Tune ``Callback.get_state``/``set_state`` for the ASHA rungs, ``Searcher.save``/``restore``.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TESTED_RAY",
    "Workaround",
    "WORKAROUNDS",
    "check",
    "available",
    "require",
    "summary",
    "WorkerGroupCallback",
    "placement_group_of",
    "trainer_without_pg_cleaner",
    "quiet_train_context_logger",
    "restored_tuner_internals",
    "trial_actor",
    "trial_ids_from",
    "RayCompatError",
    "raylet_messages_to_logging",
    "TRAIN_SNAPSHOT",
    "read_train_snapshot",
    "snapshot_checkpoints",
    "trim_train_snapshot",
    "launcher_config_checks",
    "local_ray_environment",
    "train_environment",
    "TRAIN_POLL_INTERVAL_S",
    "autoscaler_node_groups",
]

logger = logging.getLogger(__name__)

#: Ray versions this ferray is tested with (``pyproject.toml`` pins the same range).
TESTED_RAY = (">=2.60", "<2.61")


class RayCompatError(RuntimeError):
    """The installed Ray lacks an internal that a ferray feature needs."""


@dataclass(frozen=True)
class Workaround:
    """One private Ray access: what, why, and the fallback when it is missing."""

    name: str
    what: str
    why: str
    fallback: str | None  # None: required (ferray refuses to start without it)
    probe: Callable[[], bool]

    @property
    def required(self) -> bool:
        return self.fallback is None


def _has_attr(module: str, path: str) -> Callable[[], bool]:
    def probe() -> bool:
        obj: Any = importlib.import_module(module)
        for part in path.split("."):
            obj = getattr(obj, part)
        return True

    return probe


def _asha_probe() -> bool:
    from ray.tune.schedulers import ASHAScheduler

    s = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2, metric="m", mode="max")
    return all(hasattr(s, a) for a in ("_brackets", "_trial_info", "_num_stopped", "_time_attr", "_max_t")) and all(
        hasattr(b, "_rungs") for b in s._brackets
    )


def _optuna_probe() -> bool:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        s = OptunaSearch(lambda trial: None, metric="m", mode="max")
    finally:
        optuna.logging.set_verbosity(verbosity)
    return all(
        hasattr(s, a)
        for a in (
            "_ot_trials",
            "_ot_study",
            "_completed_trials",
            "_space",
            "_metric",
            "_storage",
            "_sampler",
            "_suggest_from_define_by_run_func",
            "_setup_study",
        )
    )


def _generator_probe() -> bool:
    from ray.tune.search import (
        BasicVariantGenerator,  # noqa: F401 - the module must import
        ConcurrencyLimiter,
    )
    from ray.tune.search.search_generator import SearchGenerator

    g = SearchGenerator.__new__(SearchGenerator)
    SearchGenerator.__init__(g, _dummy_searcher())
    limiter = ConcurrencyLimiter(_dummy_searcher(), max_concurrent=1)
    return hasattr(g, "_total_samples") and hasattr(g, "_finished") and isinstance(limiter.live_trials, set)


def _dummy_searcher():
    from ray.tune.search import Searcher

    class _S(Searcher):
        def suggest(self, trial_id):
            return None

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

    return _S(metric="m", mode="max")


def _pg_probe() -> bool:
    from ray.train.v2._internal.execution.worker_group.state import WorkerGroupState

    return "placement_group_handle" in getattr(WorkerGroupState, "__annotations__", {})


#: Ray Train V2's feature flag for its per-run PreemptionWatcher actor (ray-project/ray#63807).
_PREEMPTION_FLAG = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def _preemption_flag_probe() -> bool:
    from ray.train.v2._internal import constants

    name = constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR
    return name == _PREEMPTION_FLAG and name in constants.ENV_VARS_TO_PROPAGATE


#: Ray Train V2's interval between its controller's polls of the workers (a propagated environment variable).
_POLL_INTERVAL = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
#: The interval ferray asks for (Ray's default is 2 s); see :func:`train_environment`.
TRAIN_POLL_INTERVAL_S = 0.25


def _poll_interval_probe() -> bool:
    from ray.train.v2._internal import constants

    name = constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR
    return name == _POLL_INTERVAL and name in constants.ENV_VARS_TO_PROPAGATE


def _backend_interface_probe() -> bool:
    from ray.train._internal.base_worker_group import BaseWorkerGroup
    from ray.train.backend import Backend, BackendConfig

    return (
        all(callable(getattr(BaseWorkerGroup, m, None)) for m in ("execute_single_async", "execute_async", "__len__"))
        and hasattr(Backend, "share_cuda_visible_devices")
        and isinstance(getattr(BackendConfig, "train_func_context", None), property)
    )


def _trial_class():
    from ray.tune.experiment import Trial

    return Trial


def _trial_actor_probe() -> bool:
    from ray.tune.experiment.trial import _TemporaryTrialState

    return hasattr(_TemporaryTrialState(), "ray_actor")


def _snapshot_probe() -> bool:
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (
        _CheckpointManagerState,
    )

    fields = getattr(_CheckpointManagerState, "__fields__", None) or _CheckpointManagerState.model_fields
    return CHECKPOINT_MANAGER_SNAPSHOT_FILENAME == TRAIN_SNAPSHOT and set(_SNAPSHOT_KEYS) <= set(fields)


WORKAROUNDS: tuple[Workaround, ...] = (
    Workaround(
        "train-callback-worker-group",
        "ray.train.v2._internal.execution.callback.WorkerGroupCallback",
        "the only hook that sees a trial's worker group, whose placement group ferray frees when Tune ends "
        "the trial (Train's own cleaner needs the state API and freed live trials' groups under load)",
        None,
        _has_attr("ray.train.v2._internal.execution.callback", "WorkerGroupCallback"),
    ),
    Workaround(
        "worker-group-placement-group",
        "WorkerGroupState.placement_group_handle.placement_group",
        "the placement group of a trial's fold workers",
        "pruned trials keep their CPUs until the sweep ends (a warning names each)",
        _pg_probe,
    ),
    Workaround(
        "trainer-default-callbacks",
        "DataParallelTrainer._create_default_callbacks",
        "drop Train's PlacementGroupCleanerCallback (see ferray.training._kfold), and its DatasetsCallback "
        "when the trainer has no Ray Datasets: that callback starts a DatasetManager actor (one more Python "
        "process importing ray.data) for every run, datasets or not",
        "Train's own placement-group cleaner stays (needs the dashboard's state API), and every trial also "
        "starts a DatasetManager actor",
        _has_attr("ray.train.v2.api.data_parallel_trainer", "DataParallelTrainer._create_default_callbacks"),
    ),
    Workaround(
        "train-context-logger",
        "ray.train.v2._internal.execution.context",
        "Ray Train logs every report at INFO on a logger named by file path",
        "Ray Train's per-report lines show in the log",
        _has_attr("ray.train.v2._internal.execution", "context"),
    ),
    Workaround(
        "asha-rungs",
        "ASHAScheduler._brackets[i]._rungs, _trial_info, _num_stopped, _time_attr, _max_t",
        "save and restore ASHA's rung records with the experiment (ray-project/ray#30838)",
        None,
        _asha_probe,
    ),
    Workaround(
        "optuna-search-state",
        "OptunaSearch._ot_trials, _ot_study, _completed_trials, _space, ...",
        "tell PRUNED/FAIL, rebind the study on resume, retry errored trials under a new Optuna trial",
        None,
        _optuna_probe,
    ),
    Workaround(
        "search-generator-budget",
        "SearchGenerator._total_samples, _finished; ConcurrencyLimiter.live_trials",
        "`ferray resume --extend N` raises a restored sweep's trial budget; a retried errored trial's end "
        "reaches Optuna",
        None,
        _generator_probe,
    ),
    Workaround(
        "restored-tuner-internals",
        "Tuner._local_tuner._tune_config, _run_config",
        "a restored sweep uses this process's searcher, scheduler and callbacks instead of the pickled ones",
        None,
        _has_attr("ray.tune.impl.tuner_internal", "TunerInternal"),
    ),
    Workaround(
        "raylet-messages",
        "ray._private.worker.print_to_stdstream",
        "the driver prints raylet and autoscaler messages straight to stdout, past Python logging; ferray "
        "sends them to the run's log file",
        "raylet messages (e.g. worker start-up warnings) show on the terminal",
        _has_attr("ray._private.worker", "print_to_stdstream"),
    ),
    Workaround(
        "train-preemption-watcher-flag",
        f"{_PREEMPTION_FLAG}=0 (a feature flag, not a documented setting)",
        "a local Ray that ferray starts has no node to drain, so no trial needs Train's preemption watcher: "
        "one Python process less per trial start",
        "each trial also starts Train's preemption watcher actor",
        _preemption_flag_probe,
    ),
    Workaround(
        "train-poll-interval",
        f"{_POLL_INTERVAL} (Ray Train's controller poll interval, an environment variable it propagates)",
        "Train's controller takes a worker's report only when it polls (every 2 s by default), and a worker "
        "blocks on its next report until then: each epoch shorter than the interval, and the end of every run, "
        f"waited for the poll; ferray polls every {TRAIN_POLL_INTERVAL_S} s",
        "reports and the end of each Train run wait for Ray's 2 s poll",
        _poll_interval_probe,
    ),
    Workaround(
        "train-backend-worker-group",
        "BaseWorkerGroup.execute_single_async / execute_async / len (the worker group a ray.train.backend.Backend "
        "is given)",
        "set up the fold workers' gloo process group from ferray's own backend (ferray.training._backend) instead "
        "of Ray's TorchConfig, whose module imports torch in the trial function and the Train controller",
        "Ray's TorchConfig: the trial function and the Train controller each import torch",
        _backend_interface_probe,
    ),
    Workaround(
        "trial-id",
        "Trial.generate_id (the class method SearchGenerator names new trials with)",
        "a trial killed during its start-up, before Tune recorded it, continues under its own id, folder "
        "and Optuna trial when the sweep is resumed",
        "such a trial's row is dropped and its configuration runs again under a new id",
        lambda: isinstance(_trial_class().__dict__.get("generate_id"), classmethod),
    ),
    Workaround(
        "trial-actor",
        "Trial.temporary_state.ray_actor",
        "the driver-side stall guard stops a trial whose own actor stopped answering",
        "a stuck trial actor is reported as stalled in the log but keeps its resources",
        _trial_actor_probe,
    ),
    Workaround(
        "train-checkpoint-snapshot",
        "checkpoint_manager_snapshot.json (CheckpointManager._save_state's format)",
        "the retention policy trims an errored trial's older epoch checkpoints from Train's list before "
        "deleting them, so `ferray resume --retry-errored` still finds every checkpoint the list names",
        "errored trials keep every checkpoint Train's list names (only unlisted, partial ones are removed)",
        _snapshot_probe,
    ),
    Workaround(
        "autoscaler-config-checks",
        "ray.autoscaler._private.util.prepare_config, validate_config",
        "check cluster launcher YAMLs as `ray up` does (defaults merged, ray-schema.json, head_node_type, "
        "min/max workers) before anyone starts paid machines (ferray.cluster.check_launcher_config)",
        "launcher YAMLs are checked against ray-schema.json and ferray's own node-type rules",
        lambda: (
            _has_attr("ray.autoscaler._private.util", "prepare_config")()
            and _has_attr("ray.autoscaler._private.util", "validate_config")()
        ),
    ),
    Workaround(
        "autoscaler-node-groups",
        "ray._private.state.state.get_cluster_config() (the autoscaler's node groups in the GCS)",
        "a sweep on an autoscaling cluster plans against each node group at its max_count, not "
        "only the nodes up now (a GPU cluster that scales from zero has none at the start)",
        "the plan counts only the nodes that are up; a cluster scaling from zero GPU nodes is refused "
        "(plan it with `ferray search --dry-run --cluster-config`, or start its GPU nodes first)",
        _has_attr("ray._private.state", "state.get_cluster_config"),
    ),
)


def check() -> list[tuple[Workaround, bool, str]]:
    """Probe every entry: ``(workaround, available, detail)``."""
    out = []
    for w in WORKAROUNDS:
        try:
            ok, detail = bool(w.probe()), ""
        except Exception as exc:  # noqa: BLE001 - any failure means "moved"
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        out.append((w, ok, detail))
    return out


def available(name: str) -> bool:
    """Whether the installed Ray has the internal of entry ``name``."""
    (entry,) = [w for w in WORKAROUNDS if w.name == name]
    try:
        return bool(entry.probe())
    except Exception:  # noqa: BLE001 - any failure means "moved"
        return False


def require() -> list[tuple[Workaround, bool, str]]:
    """:func:`check`, raising :class:`RayCompatError` when a required entry is missing."""
    import ray

    results = check()
    missing = [(w, d) for w, ok, d in results if not ok and w.required]
    if missing:
        lines = "\n".join(f"  {w.name}: {w.what} ({d}) -- needed to {w.why}" for w, d in missing)
        raise RayCompatError(
            f"ray {ray.__version__} lacks internals ferray needs (tested with ray "
            f"{','.join(TESTED_RAY)}):\n{lines}\nInstall a tested Ray: pip install "
            f"'ray[tune,train,default]{','.join(TESTED_RAY)}'"
        )
    for w, ok, d in results:
        if not ok:
            logger.warning("ray %s: %s is missing (%s); fallback: %s", ray.__version__, w.what, d, w.fallback)
    return results


def summary(results: list[tuple[Workaround, bool, str]] | None = None) -> str:
    """One line: the Ray version and how many workarounds are active."""
    import ray

    results = check() if results is None else results
    active = sum(ok for _, ok, _ in results)
    fallbacks = [w.name for w, ok, _ in results if not ok]
    tail = f"; fallbacks: {', '.join(fallbacks)}" if fallbacks else ""
    return f"ray {ray.__version__} ({active}/{len(results)} Ray internals in use, see `ferray doctor`{tail})"


# -- accessors ---------------------------------------------------------------------------------

try:
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback
except ImportError:  # pragma: no cover - another Ray: require() names it before any trial

    class WorkerGroupCallback:  # type: ignore[no-redef]
        pass


def placement_group_of(worker_group) -> Any | None:
    """The placement group of a Train worker group, or ``None`` when Ray moved it."""
    try:
        return worker_group._worker_group_state.placement_group_handle.placement_group
    except AttributeError:
        return None


def trainer_without_pg_cleaner(base):
    """``base`` (a Ray Train trainer class) without Train's ``PlacementGroupCleanerCallback``, and
    without its ``DatasetsCallback`` when the trainer is given no Ray Datasets (ferray's fold
    workers read their data from the object store; the callback's DatasetManager actor would be
    one more process to start per trial)."""
    create = getattr(base, "_create_default_callbacks", None)
    if create is None:  # another Ray: keep its defaults (the documented fallback)
        return base

    class Trainer(base):
        def _create_default_callbacks(self):
            drop = {"PlacementGroupCleanerCallback"} | (
                set() if getattr(self, "datasets", None) else {"DatasetsCallback"}
            )
            return [c for c in create(self) if type(c).__name__ not in drop]

    Trainer.__name__ = Trainer.__qualname__ = base.__name__
    return Trainer


def quiet_train_context_logger() -> None:
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def restored_tuner_internals(tuner):
    """The ``TunerInternal`` of a restored ``Tuner`` (to swap in this process's configs)."""
    import ray

    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_tune_config") or not hasattr(internal, "_run_config"):
        raise RayCompatError(
            "this Ray version restores tuners differently than ferray expects; ferray resume "
            f"needs ray {','.join(TESTED_RAY)} (found {ray.__version__})"
        )
    return internal


@contextmanager
def raylet_messages_to_logging(logger_name: str = "ray.raylet"):
    """While the block runs, raylet/autoscaler messages the driver would print go to a logger."""
    try:
        import ray._private.worker as worker

        original = worker.print_to_stdstream
    except (ImportError, AttributeError):
        yield False
        return
    log = logging.getLogger(logger_name)

    def to_logging(data, ignore_prefix: bool = False):
        if data.get("pid") in ("raylet", "autoscaler"):
            for line in data.get("lines", []):
                log.warning("(%s) %s", data.get("pid"), str(line).rstrip())
            return
        return original(data, ignore_prefix=ignore_prefix)

    worker.print_to_stdstream = to_logging
    try:
        yield True
    finally:
        worker.print_to_stdstream = original


@contextmanager
def trial_ids_from(trial_id: str):
    """While the block runs, the next Tune trial created gets ``trial_id`` (then fresh ids again)."""
    from ray.tune.experiment import Trial

    original = Trial.__dict__["generate_id"]
    ids = iter([trial_id])
    Trial.generate_id = classmethod(lambda cls: next(ids, None) or original.__func__(cls))
    try:
        yield
    finally:
        Trial.generate_id = original


def trial_actor(trial) -> Any | None:
    """The actor running a Tune trial, or ``None``."""
    state = getattr(trial, "temporary_state", None)
    return getattr(state, "ray_actor", None)


# -- Ray Train's checkpoint list (a Train run's ``checkpoint_manager_snapshot.json``) ----------------

#: The file in a Train run's folder (a trial's ``checkpoints/``) listing its registered checkpoints.
#: Train writes it after every checkpoint is whole (all workers' files copied) and before it deletes
#: older ones; a restarted run continues from ``latest_checkpoint_result`` and fails when a listed
#: checkpoint folder is missing.
TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"
_SNAPSHOT_KEYS = (
    "checkpoint_results",
    "checkpoint_report_indices",
    "latest_checkpoint_result",
    "pending_training_results",
)


def read_train_snapshot(path) -> dict | None:
    """The parsed checkpoint list at ``path``; ``None`` when missing, unreadable or of another format."""

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or any(k not in doc for k in _SNAPSHOT_KEYS):
        return None
    if not isinstance(doc["checkpoint_results"], list) or len(doc["checkpoint_results"]) != len(
        doc["checkpoint_report_indices"]
    ):
        return None
    return doc


def snapshot_checkpoints(doc: dict) -> tuple[list[str], str | None]:
    """``(listed checkpoint folder names, the latest's name or None)`` of a parsed checkpoint list."""
    names = [r.get("checkpoint_dir_name") for r in doc["checkpoint_results"] if isinstance(r, dict)]
    names += [r.get("checkpoint_dir_name") for r in doc.get("pending_training_results") or [] if isinstance(r, dict)]
    latest = doc.get("latest_checkpoint_result")
    latest_name = latest.get("checkpoint_dir_name") if isinstance(latest, dict) else None
    if latest_name:
        names.append(latest_name)
    return list(dict.fromkeys(n for n in names if isinstance(n, str))), latest_name


def trim_train_snapshot(doc: dict, keep: set[str]) -> dict | None:
    """A copy of the checkpoint list naming only the folders in ``keep``; ``None`` when it cannot
    (the latest checkpoint or a checkpoint awaiting validation would be dropped)."""
    _, latest = snapshot_checkpoints(doc)
    if latest is not None and latest not in keep:
        return None
    if any(
        isinstance(r, dict) and r.get("checkpoint_dir_name") not in keep
        for r in doc.get("pending_training_results") or []
    ):
        return None
    out = dict(doc)
    pairs = [
        (r, i)
        for r, i in zip(doc["checkpoint_results"], doc["checkpoint_report_indices"])
        if isinstance(r, dict) and r.get("checkpoint_dir_name") in keep
    ]
    out["checkpoint_results"] = [r for r, _ in pairs]
    out["checkpoint_report_indices"] = [i for _, i in pairs]
    for key in (
        "validated_checkpoint_dir_names",
        "timed_out_validation_checkpoint_dir_names",
        "failed_validation_checkpoint_dir_names",
    ):
        if isinstance(doc.get(key), list):
            out[key] = [n for n in doc[key] if n in keep]
    return out


def launcher_config_checks():
    """Ray's own ``(prepare_config, validate_config)`` for cluster launcher YAMLs, or ``None`` when Ray moved them."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:
        return None
    return prepare_config, validate_config


def local_ray_environment() -> dict[str, str]:
    """Environment variables for a one-machine Ray that ferray starts itself.

    Ray's worker processes inherit them from the raylet, and Ray Train passes them on to its
    controller. ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0``: Ray Train starts a watcher actor
    per run that polls for node drains (spot preemption); one machine has nothing to drain,
    and the actor is one more Python process (Ray's imports) in every trial's start-up. On a
    cluster Ray's default stays. Empty when the installed Ray lacks the flag (the fallback).
    """
    try:
        available = _preemption_flag_probe()
    except Exception:  # noqa: BLE001 - another Ray: keep its default
        available = False
    return {_PREEMPTION_FLAG: "0"} if available else {}


def train_environment() -> dict[str, str]:
    """Environment variables of every Ray Train run ferray starts, on a local Ray or a cluster.

    Ray Train reads them where ``fit()`` is called (``ferray train``'s driver, a sweep's trial
    function) and passes them on to its controller and workers.
    ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``: the controller collects the workers' reports (and
    sees a run finish) only when it polls them, and a worker's second report waits for the
    first to be collected; at Ray's 2 s an epoch of half a second took 2, and every run ended
    up to 2 s late. Polling costs the workers one small task per poll each. Empty when the
    installed Ray lacks the variable (the fallback).
    """
    try:
        available = _poll_interval_probe()
    except Exception:  # noqa: BLE001 - another Ray: keep its default
        available = False
    return {_POLL_INTERVAL: str(TRAIN_POLL_INTERVAL_S)} if available else {}


def autoscaler_node_groups() -> list[dict] | None:
    """The autoscaler's node groups (``name``, ``resources``, ``max_count``) of the connected cluster.

    ``None`` without an autoscaler (or when Ray moved the internal). Ray's autoscaler v2 (KubeRay,
    and the cluster launcher where it is enabled) keeps them in the GCS.
    """
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - not connected, no such internal, or no autoscaler
        return None
    if config is None or not config.node_group_configs:
        return None
    return [
        {"name": g.name, "resources": dict(g.resources), "max_count": int(g.max_count)}
        for g in config.node_group_configs
    ]
