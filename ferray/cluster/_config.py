"""Checks for the cluster configurations in ``clusters/``: before anyone starts paid machines.

:func:`check_launcher_config` checks a Ray cluster launcher YAML the way ``ray up`` does:
Ray's defaults for the provider merged in, then Ray's own validation (``ray-schema.json``,
``head_node_type`` among ``available_node_types``, the workers' ``min_workers`` within
``max_workers``); ferray adds per-node-type rules Ray leaves to launch time. Ray keeps those
functions in a private module: :mod:`ferray.runtime.compat` names them, and when Ray moves them
the check falls back to the JSON schema and ferray's own rules.

:func:`check_kuberay_manifest` checks KubeRay ``RayCluster`` and ``RayJob`` manifests for the
fields KubeRay requires and the values it accepts, and rejects unknown fields with the
nearest known name (a misspelt ``shutdownAfterJobFinishes`` is silently ignored by a
cluster's API server when the CRD prunes unknown fields, and the cluster then runs on after
the job, costing GPU hours).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from ferray.errors import ConfigError, closest

__all__ = ["check_launcher_config", "check_kuberay_manifest", "KUBERAY_FIELDS"]

#: Fields of the KubeRay ray.io/v1 types ferray's checks know (KubeRay v1.6/v1.7 API reference).
KUBERAY_FIELDS: dict[str, frozenset[str]] = {
    "RayClusterSpec": frozenset(
        {
            "upgradeStrategy",
            "authOptions",
            "suspend",
            "managedBy",
            "autoscalerOptions",
            "headServiceAnnotations",
            "enableInTreeAutoscaling",
            "gcsFaultToleranceOptions",
            "historyServerOptions",
            "networkPolicy",
            "tlsOptions",
            "headGroupSpec",
            "rayVersion",
            "workerGroupSpecs",
        }
    ),
    "HeadGroupSpec": frozenset(
        {
            "template",
            "headService",
            "enableIngress",
            "ingressOptions",
            "resources",
            "labels",
            "rayStartParams",
            "serviceType",
        }
    ),
    "WorkerGroupSpec": frozenset(
        {
            "suspend",
            "groupName",
            "replicas",
            "minReplicas",
            "maxReplicas",
            "idleTimeoutSeconds",
            "priority",
            "resources",
            "labels",
            "rayStartParams",
            "template",
            "scaleStrategy",
            "numOfHosts",
        }
    ),
    "AuthOptions": frozenset({"mode", "secretName", "enableK8sTokenAuth"}),
    "AutoscalerOptions": frozenset(
        {
            "resources",
            "image",
            "imagePullPolicy",
            "securityContext",
            "idleTimeoutSeconds",
            "upscalingMode",
            "version",
            "env",
            "envFrom",
            "volumeMounts",
            "command",
            "args",
        }
    ),
    "RayJobSpec": frozenset(
        {
            "activeDeadlineSeconds",
            "backoffLimit",
            "rayClusterSpec",
            "submitterPodTemplate",
            "metadata",
            "clusterSelector",
            "submitterConfig",
            "managedBy",
            "deletionStrategy",
            "entrypoint",
            "runtimeEnvYAML",
            "jobId",
            "submissionMode",
            "entrypointResources",
            "entrypointNumCpus",
            "entrypointNumGpus",
            "ttlSecondsAfterFinished",
            "shutdownAfterJobFinishes",
            "suspend",
        }
    ),
}
_SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: The first Ray release with token authentication (KubeRay's authOptions needs it).
_TOKEN_AUTH_RAY = (2, 52)


def _load(path: str | os.PathLike, *, multi: bool) -> Any:
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None] if multi else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


# -- Ray cluster launcher ------------------------------------------------------------------------


def _schema_error(path, exc) -> ConfigError:
    where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
    return ConfigError(f"{path}: {where}: {exc.message}")


def _node_type_rules(path, cfg: dict) -> None:
    types = cfg.get("available_node_types") or {}
    if not types:
        raise ConfigError(f"{path}: available_node_types: none given; name a head node type and the worker types")
    head = cfg.get("head_node_type")
    if head not in types:
        raise ConfigError(
            f"{path}: head_node_type {head!r} is not one of available_node_types "
            f"({', '.join(types)}){closest(str(head), types)}"
        )
    total_min = 0
    for name, node in types.items():
        lo, hi = node.get("min_workers", 0), node.get("max_workers", cfg.get("max_workers", 0))
        if lo > hi:
            raise ConfigError(
                f"{path}: available_node_types.{name}: min_workers is {lo}, but must be <= max_workers ({hi})"
            )
        for key, value in (node.get("resources") or {}).items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(
                    f"{path}: available_node_types.{name}.resources.{key} is {value!r}, but must be a number >= 0"
                )
        if name != head:
            total_min += lo
    if total_min > cfg.get("max_workers", total_min):
        raise ConfigError(
            f"{path}: max_workers is {cfg['max_workers']}, but must be >= the sum of the worker types' "
            f"min_workers ({total_min})"
        )


def check_launcher_config(path: str | os.PathLike) -> dict:
    """Check a Ray cluster launcher YAML as ``ray up`` would; return it with Ray's defaults filled in.

    Raises:
        ConfigError: naming the file, the key path and the rule it breaks.
    """
    import jsonschema

    from ferray.runtime.compat import launcher_config_checks

    cfg = _load(path, multi=False)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a cluster launcher config is a mapping (cluster_name, provider, ...)")
    checks = launcher_config_checks()
    if checks is not None:
        prepare, validate = checks
        try:
            prepared = prepare(copy.deepcopy(cfg))
            validate(prepared)
        except jsonschema.ValidationError as exc:
            raise _schema_error(path, exc) from None
        except (ValueError, KeyError, AssertionError, RuntimeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    else:  # Ray moved its checks: the schema it ships, and the rules below
        import ray.autoscaler

        schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
        try:
            jsonschema.validate(cfg, schema)
        except jsonschema.ValidationError as exc:
            raise _schema_error(path, exc) from None
        prepared = cfg
    _node_type_rules(path, prepared)
    return prepared


# -- KubeRay --------------------------------------------------------------------------------------


def _fields(where: str, obj: Any, kind: str, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: must be a mapping ({kind})")
    known = KUBERAY_FIELDS[kind]
    for key in obj:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown {kind} field{closest(key, known)}")
    for key in required:
        if key not in obj:
            raise ConfigError(f"{where}.{key}: required ({kind})")
    return obj


def _pod_template(where: str, template: Any) -> None:
    containers = ((template or {}).get("spec") or {}).get("containers") if isinstance(template, dict) else None
    if not isinstance(containers, list) or not containers:
        raise ConfigError(f"{where}.template.spec.containers: at least one container is required")
    for i, c in enumerate(containers):
        for key in ("name", "image"):
            if not isinstance(c, dict) or not c.get(key):
                raise ConfigError(f"{where}.template.spec.containers[{i}].{key}: required")


def _start_params(where: str, params: Any) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        raise ConfigError(f"{where}.rayStartParams: must be a mapping of strings")
    for key, value in params.items():
        if not isinstance(value, str):
            raise ConfigError(
                f"{where}.rayStartParams.{key} is {value!r}, but must be a string (quote it: "
                f"'{value}'); KubeRay's CRD types it map[string]string"
            )


def _int(where: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} is {value!r}, but must be an integer >= {low}")
    return value


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:2])


def _cluster_spec(where: str, spec: Any) -> None:
    spec = _fields(where, spec, "RayClusterSpec", required=("headGroupSpec",))
    head = _fields(f"{where}.headGroupSpec", spec["headGroupSpec"], "HeadGroupSpec", required=("template",))
    _pod_template(f"{where}.headGroupSpec", head["template"])
    _start_params(f"{where}.headGroupSpec", head.get("rayStartParams"))
    names = set()
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        w = f"{where}.workerGroupSpecs[{i}]"
        group = _fields(w, group, "WorkerGroupSpec", required=("groupName", "template"))
        if group["groupName"] in names:
            raise ConfigError(f"{w}.groupName: {group['groupName']!r} is used twice; worker group names are unique")
        names.add(group["groupName"])
        lo = _int(f"{w}.minReplicas", group.get("minReplicas", 0))
        hi = _int(f"{w}.maxReplicas", group.get("maxReplicas", 2**31 - 1))
        if lo > hi:
            raise ConfigError(f"{w}: minReplicas is {lo}, but must be <= maxReplicas ({hi})")
        if "replicas" in group and not lo <= _int(f"{w}.replicas", group["replicas"]) <= hi:
            raise ConfigError(
                f"{w}: replicas is {group['replicas']}, but must be within minReplicas..maxReplicas ({lo}..{hi})"
            )
        _pod_template(w, group["template"])
        _start_params(w, group.get("rayStartParams"))
    if "autoscalerOptions" in spec:
        _fields(f"{where}.autoscalerOptions", spec["autoscalerOptions"], "AutoscalerOptions")
    if "authOptions" in spec:
        auth = _fields(f"{where}.authOptions", spec["authOptions"], "AuthOptions")
        mode = auth.get("mode", "token")
        if mode not in ("disabled", "token"):
            raise ConfigError(f"{where}.authOptions.mode is {mode!r}, but must be 'token' or 'disabled'")
        if mode == "token":
            version = spec.get("rayVersion")
            if version is None or _version(version) < _TOKEN_AUTH_RAY:
                raise ConfigError(
                    f"{where}.rayVersion is {version!r}, but authOptions.mode 'token' needs rayVersion "
                    f">= {'.'.join(map(str, _TOKEN_AUTH_RAY))} (KubeRay reads it to configure the pods)"
                )


def _job_spec(where: str, spec: Any) -> None:
    import yaml

    spec = _fields(where, spec, "RayJobSpec")
    entry = spec.get("entrypoint")
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"{where}.entrypoint: required, the command the job runs")
    if ("rayClusterSpec" in spec) == ("clusterSelector" in spec):
        raise ConfigError(
            f"{where}: give exactly one of rayClusterSpec (a cluster for this job) and clusterSelector "
            "(an existing cluster)"
        )
    if "rayClusterSpec" in spec:
        _cluster_spec(f"{where}.rayClusterSpec", spec["rayClusterSpec"])
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in _SUBMISSION_MODES:
        raise ConfigError(
            f"{where}.submissionMode is {mode!r}, but must be one of {', '.join(_SUBMISSION_MODES)}"
            f"{closest(str(mode), _SUBMISSION_MODES)}"
        )
    shutdown = spec.get("shutdownAfterJobFinishes", False)
    if not isinstance(shutdown, bool):
        raise ConfigError(f"{where}.shutdownAfterJobFinishes is {shutdown!r}, but must be true or false")
    ttl = _int(f"{where}.ttlSecondsAfterFinished", spec.get("ttlSecondsAfterFinished", 0))
    if ttl > 0 and not shutdown:
        raise ConfigError(
            f"{where}.ttlSecondsAfterFinished is {ttl}, but only applies with shutdownAfterJobFinishes: true"
        )
    if "activeDeadlineSeconds" in spec:
        _int(f"{where}.activeDeadlineSeconds", spec["activeDeadlineSeconds"], low=1)
    if "runtimeEnvYAML" in spec:
        try:
            env = yaml.safe_load(spec["runtimeEnvYAML"])
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}.runtimeEnvYAML: not valid YAML ({exc})") from None
        if not isinstance(env, dict):
            raise ConfigError(f"{where}.runtimeEnvYAML: must hold a mapping (env_vars, py_modules, ...)")


def check_kuberay_manifest(path: str | os.PathLike) -> list[dict]:
    """Check every ``RayCluster`` and ``RayJob`` in a (multi-document) manifest; return the documents.

    Other kinds (a ``ConfigMap`` holding the spec, a ``Secret``) need ``apiVersion``,
    ``kind`` and ``metadata.name``.

    Raises:
        ConfigError: naming the file, the document, the field path and the rule.
    """
    docs = _load(path, multi=True)
    if not docs:
        raise ConfigError(f"{path}: no Kubernetes objects in it")
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: document {i} is not a mapping")
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        name = meta.get("name") if isinstance(meta, dict) else None
        where = f"{path}: document {i} ({kind or '?'} {name or '?'})"
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                raise ConfigError(f"{where}: {key} is required")
        if not name or not _NAME.match(str(name)) or len(str(name)) > 63:
            raise ConfigError(
                f"{where}: metadata.name {name!r} must be a DNS label (lowercase letters, digits and '-', at most 63)"
            )
        if kind in ("RayCluster", "RayJob"):
            if doc["apiVersion"] != "ray.io/v1":
                raise ConfigError(f"{where}: apiVersion is {doc['apiVersion']!r}, but KubeRay's {kind} is 'ray.io/v1'")
            (_cluster_spec if kind == "RayCluster" else _job_spec)(f"{where}: spec", doc.get("spec"))
    return docs
