"""A two-node Ray cluster on this machine (``ray_two_nodes``): the resource plan read from its nodes,
and a sweep submitted to it whose fold workers train on both nodes.

Both nodes declare one GPU this machine need not have: the fold workers then get a share of a
GPU that CUDA does not see, and train on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _ray_helpers import ferray_env, run_ferray

from ferray.cli import main as _cli
from ferray.run.layout import RunLayout, TrialLayout

pytestmark = pytest.mark.ray

SPEC = """\
name: two
data: {{source: "synthetic:basic7?count=140&size=48&seed=0&difficulty=0.2"}}
folds: {{k: 2, seed: 0, holdout: 0.15}}
model: {{backbone: test_resnet, pretrained: false}}
augment: {{strength: 0.1, tta: []}}
run: {{batch_size: 64, amp: "off", channels_last: false}}
resources: {{{resources}}}
space:
  optim.lr: {{type: float, low: 1.0e-3, high: 3.0e-2, log: true}}
budget: {{trials: 1, max_epochs: 2, grace_period: 1, reduction_factor: 2, max_concurrent: 1}}
search: {{sampler: random, seed: 0}}
"""

# Each node could hold both folds (2 x 0.4 CPU, 2 x 0.5 GPU): only the spread placement puts them on two nodes.
RESOURCES = "cpus_per_worker: 0.4, gpus_per_worker: 0.5, placement: spread"


@pytest.fixture
def with_token(ray_two_nodes, token_env):
    return token_env(ray_two_nodes)


def _spec(tmp_path, resources: str = RESOURCES):
    path = tmp_path / "two.yaml"
    path.write_text(SPEC.format(resources=resources))
    return path


def _node_ids(head) -> set[str]:
    import requests

    r = requests.get(
        f"{head.address}/nodes?view=summary", headers={"Authorization": f"Bearer {head.token}"}, timeout=10
    )
    return {n["raylet"]["nodeId"] for n in r.json()["data"]["summary"] if n["raylet"]["state"] == "ALIVE"}


def _ferray(args: list[str], token: str | None, cwd) -> subprocess.CompletedProcess:
    """The ``ferray`` command in its own process (its Ray client holds the token it started with)."""
    repo = str(Path(__file__).resolve().parents[2])
    env = ferray_env(HOME=str(cwd), PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        env.pop(var, None)
    if token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    return run_ferray(*args, env=env, cwd=cwd, timeout=150)


@pytest.mark.timeout(180)
def test_the_dry_run_plans_against_the_clusters_nodes_and_refuses_what_cannot_be_placed(ray_two_nodes, tmp_path):
    head = ray_two_nodes
    done = _ferray(["search", str(_spec(tmp_path)), "--dry-run", "--address", head.gcs], head.token, tmp_path)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resource plan (from the Ray cluster at {head.gcs}):" in out
    assert "cluster: 2 CPUs, 2 GPUs on 2 nodes" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("  head ", "  worker "))]
    # head and worker: 1 node each, 1 CPU, 1 GPU, 2 fold workers of (0.4 CPU, 0.5 GPU) per node
    assert rows == [["head", "1", "1", "1", "2"], ["worker", "1", "1", "1", "2"]], out
    assert "one trial: driver 0.01 CPU + 2 fold workers x (0.4 CPU, 0.5 GPU) = 0.81 CPUs, 1 GPUs" in out
    assert "fold workers: placement spread, on head, worker" in out
    assert "trials at once: 1" in out  # budget.max_concurrent: 1

    done = _ferray(
        ["search", str(_spec(tmp_path, "gpus_per_worker: 2")), "--dry-run", "--address", head.gcs], head.token, tmp_path
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert (
        "error: this sweep can never be placed: one trial needs 4 GPUs (2 fold workers x 2) but the cluster's "
        "GPUs hold 0 such workers at once (head: 1 x (1 CPU, 1 GPU); worker: 1 x (1 CPU, 1 GPU)); set "
        "resources.gpus_per_worker <= 1, or add GPU nodes"
    ) in done.stderr


@pytest.mark.timeout(240)
def test_a_submitted_sweep_trains_its_folds_on_both_nodes(with_token, tmp_path, capsys):
    store = tmp_path / "store"
    code = _cli(
        [
            "submit",
            str(_spec(tmp_path)),
            "--address",
            with_token.address,
            "--storage",
            str(store),
            "--name",
            "two",
            "--wait",
            "--no-finish",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out[-6000:]
    assert out.rstrip().splitlines()[-1].endswith(f"SUCCEEDED; run directory: {store}/two"), out[-2000:]
    run = RunLayout(store / "two")
    for path in (run.results, run.manifest, run.spec, run.folds):
        assert path.is_file(), path
    trials = [p for p in run.root.iterdir() if (p / TrialLayout.METRICS).is_file()]
    assert len(trials) == 1, sorted(p.name for p in run.root.iterdir())
    trial = TrialLayout(trials[0])
    assert trial.oof.is_file() and trial.holdout.is_file()
    assert trial.weights(0).is_file() and trial.weights(1).is_file()
    metrics = json.loads(trial.metrics.read_text())
    assert 0.0 <= metrics["oof"]["accuracy"] <= 1.0
    nodes = {f["fold"]: f["node_id"] for f in metrics["fold_nodes"]}
    assert sorted(nodes) == [0, 1]
    # one fold on each node: the spread placement, on the cluster's two nodes
    assert len(set(nodes.values())) == 2 and set(nodes.values()) == _node_ids(with_token), metrics["fold_nodes"]
