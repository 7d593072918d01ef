"""The configurations in clusters/: Ray's own launcher checks, KubeRay's required fields, the SLURM script."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ferray.cluster import check_kuberay_manifest, check_launcher_config
from ferray.errors import ConfigError
from ferray.runtime import compat

CLUSTERS = Path(__file__).resolve().parents[2] / "clusters"
LAUNCHER = sorted(CLUSTERS.glob("*.yaml"))


def test_every_launcher_config_is_checked_here():
    assert {p.name for p in LAUNCHER} == {"aws-gpu.yaml", "gcp-gpu.yaml"}


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_launcher_config_passes_rays_checks(path):
    cfg = check_launcher_config(path)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0  # a CPU head, never scaled
    gpu = [t for name, t in types.items() if name != cfg["head_node_type"] and t["resources"].get("GPU", 0) > 0]
    assert gpu and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu)  # autoscaling 0..N GPU nodes
    assert sum(t["max_workers"] for t in gpu) <= cfg["max_workers"] or len(gpu) == 1
    assert any("pip install" in c and "ferray" in c for c in cfg["setup_commands"])
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    text = path.read_text()
    scheme = {"aws-gpu.yaml": "s3://", "gcp-gpu.yaml": "gs://"}[path.name]
    assert f"--storage {scheme}" in text and "ferray submit" in text and "ray dashboard" in text


def _write(tmp_path, cfg) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def aws():
    return yaml.safe_load((CLUSTERS / "aws-gpu.yaml").read_text())


def test_a_misspelt_head_node_type_is_refused(tmp_path, aws):
    aws["head_node_type"] = "haed"
    with pytest.raises(ConfigError, match=r"cluster.yaml: `head_node_type` must be one of `available_node_types`"):
        check_launcher_config(_write(tmp_path, aws))


def test_an_unknown_key_is_refused_with_its_path(tmp_path, aws):
    aws["available_node_types"]["gpu_worker"]["min_worker"] = 1
    with pytest.raises(
        ConfigError,
        match=r"available_node_types.gpu_worker: Additional properties are not allowed "
        r"\('min_worker' was unexpected\)",
    ):
        check_launcher_config(_write(tmp_path, aws))


def test_min_workers_above_max_workers_is_refused(tmp_path, aws):
    aws["available_node_types"]["gpu_worker"].update(min_workers=3, max_workers=2)
    with pytest.raises(
        ConfigError,
        match=r"cluster.yaml: available_node_types.gpu_worker: min_workers is 3, but must "
        r"be <= max_workers \(2\)",
    ):
        check_launcher_config(_write(tmp_path, aws))


def test_without_rays_private_checks_the_schema_and_ferrays_rules_still_apply(tmp_path, aws, monkeypatch):
    monkeypatch.setattr(compat, "launcher_config_checks", lambda: None)
    assert check_launcher_config(CLUSTERS / "aws-gpu.yaml")["head_node_type"] == "head"
    aws["max_workers"] = "four"
    with pytest.raises(ConfigError, match=r"cluster.yaml: max_workers: 'four' is not of type 'integer'"):
        check_launcher_config(_write(tmp_path, aws))
    aws["max_workers"], aws["head_node_type"] = 4, "haed"
    with pytest.raises(
        ConfigError,
        match=r"head_node_type 'haed' is not one of available_node_types "
        r"\(gpu_worker, head\); did you mean 'head'\?",
    ):
        check_launcher_config(_write(tmp_path, aws))


def test_the_compat_entry_for_rays_launcher_checks_is_registered():
    entry = next(w for w in compat.WORKAROUNDS if w.name == "autoscaler-config-checks")
    assert entry.fallback and entry.probe() and compat.launcher_config_checks() is not None


# -- KubeRay -------------------------------------------------------------------------------------


def _docs(name):
    return {d["kind"]: d for d in check_kuberay_manifest(CLUSTERS / "kuberay" / name)}


def _gpu_group(cluster_spec):
    groups = cluster_spec["workerGroupSpecs"]
    assert len(groups) == 1
    group = groups[0]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1 and limits["nvidia.com/gpu"] == "1"
    return group


def test_the_raycluster_has_token_auth_and_autoscaling_gpu_workers():
    spec = _docs("raycluster.yaml")["RayCluster"]["spec"]
    assert spec["authOptions"] == {"mode": "token"} and spec["enableInTreeAutoscaling"] is True
    _gpu_group(spec)


def test_the_rayjob_runs_a_sweep_and_deletes_its_cluster():
    docs = _docs("rayjob.yaml")
    job = docs["RayJob"]["spec"]
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
    cluster = job["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    _gpu_group(cluster)
    argv = shlex.split(job["entrypoint"])
    assert argv[:4] == ["python", "-m", "ferray.cluster", "search"]
    from ferray.cluster._entrypoint import _parser

    args = _parser().parse_args(argv[3:])  # the entrypoint's own argument parser accepts it
    assert args.storage.startswith("s3://") and args.name
    # the spec the entrypoint names is the ConfigMap's, mounted on the head, and is a valid spec
    head = cluster["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == "spec")
    volume = next(v for v in head["volumes"] if v["name"] == "spec")
    config_map = docs["ConfigMap"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    key = Path(args.spec).name
    assert args.spec == f"{mount['mountPath']}/{key}"
    from ferray.search import load_search_spec

    load_search_spec(key, text=config_map["data"][key], check_backbones=False)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda j: j["spec"].update(shutdownAfterJobFinish=True),
            r"spec.shutdownAfterJobFinish: unknown RayJobSpec field; did you mean 'shutdownAfterJobFinishes'",
        ),
        (
            lambda j: j["spec"].update(shutdownAfterJobFinishes=False),
            r"spec.ttlSecondsAfterFinished is 600, but only applies with shutdownAfterJobFinishes: true",
        ),
        (lambda j: j["spec"].pop("entrypoint"), r"spec.entrypoint: required, the command the job runs"),
        (
            lambda j: j["spec"]["rayClusterSpec"].update(rayVersion="2.40.0"),
            r"spec.rayClusterSpec.rayVersion is '2.40.0', but authOptions.mode 'token' needs rayVersion >= 2.52",
        ),
        (
            lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 4}),
            r"spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus is 4, but must be a string \(quote it: '4'\)",
        ),
        (
            lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=5),
            r"spec.rayClusterSpec.workerGroupSpecs\[0\]: minReplicas is 5, but must be <= maxReplicas \(4\)",
        ),
        (
            lambda j: j["spec"].update(submissionMode="HttpMode"),
            r"spec.submissionMode is 'HttpMode', but must be one of "
            r"K8sJobMode, HTTPMode, InteractiveMode, SidecarMode; "
            r"did you mean 'HTTPMode'\?",
        ),
    ],
)
def test_kuberay_mistakes_are_refused_with_the_field_path(tmp_path, edit, message):
    docs = list(yaml.safe_load_all((CLUSTERS / "kuberay" / "rayjob.yaml").read_text()))
    edit(docs[1])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(ConfigError, match=r"job.yaml: document 2 \(RayJob ferray-sweep\): " + message):
        check_kuberay_manifest(path)


# -- SLURM ---------------------------------------------------------------------------------------


def test_the_slurm_script_is_valid_bash_and_starts_ray_on_every_node():
    script = CLUSTERS / "slurm" / "ferray-sweep.sbatch"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    text = script.read_text()
    assert "ray symmetric-run" in text and '--min-nodes "$SLURM_JOB_NUM_NODES"' in text
    assert "export RAY_AUTH_MODE=token" in text and "--storage" in text and "ferray resume" in text
    if shutil.which("shellcheck"):
        lint = subprocess.run(
            ["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_the_gpu_spec_keeps_every_gpu_of_the_scaled_up_cluster_busy(path):
    from ferray.search import load_search_spec
    from ferray.search._plan import launcher_nodes, plan_search_resources

    spec = load_search_spec(CLUSTERS.parent / "search_spaces" / "affectnet.yaml")
    nodes, _ = launcher_nodes(path)
    plan = plan_search_resources(spec, spec.folds.k, nodes=nodes)
    assert plan.drivers_on_head  # the CPU head holds the trials' drivers, the GPU nodes only fold workers
    for node, workers in zip(plan.nodes, plan.workers_per_node):
        if node.head:
            assert workers == 0
        else:  # one fold worker per GPU (the spec asks for whole GPUs), none left idle by the CPUs
            assert workers == node.gpus / spec.resources.gpus_per_worker
    assert plan.concurrent_trials * plan.trial_gpus == plan.cluster_gpus
