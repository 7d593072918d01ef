"""A sweep with --storage URI, run as a cluster job runs it (``python -m ferray.cluster``), on a local Ray.

The storage is a ``file://`` URI: the same pyarrow code path as ``s3://`` and ``gs://``. The run
folder on storage must end complete (driver files, every trial's files, ensemble, bundle), pull
to a "laptop" folder where ``ferray status`` works, and resume from storage alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _ray_helpers import ferray_env, run_ferray

from ferray.cluster import pull_run
from ferray.run.layout import RunLayout, TrialLayout

pytestmark = pytest.mark.ray

SPEC = """\
name: tiny
data: {source: "synthetic:basic7?count=160&size=48&seed=0&difficulty=0.2"}
folds: {k: 2, seed: 0, holdout: 0.15}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.1, tta: []}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
budget: {trials: 2, max_epochs: 2, grace_period: 1, reduction_factor: 2, max_concurrent: 1}
search: {sampler: tpe, seed: 0, n_startup_trials: 2}
ensemble: {enabled: true, top_k: 2, methods: [mean], export: true}
"""


def _job(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_ferray(
        *args,
        "--num-cpus",
        "2",
        "--push-every",
        "5",
        module="ferray.cluster",
        env=ferray_env(COLUMNS="160"),
        cwd=cwd,
        timeout=700,
    )


@pytest.fixture(scope="module")
def remote_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    (root / "tiny.yaml").write_text(SPEC)
    uri = f"file://{root / 'store'}"
    out = _job(["search", "tiny.yaml", "--storage", uri, "--name", "t1"], root)
    return root, f"{uri}/t1", out


@pytest.mark.timeout(900)
def test_the_run_folder_on_storage_is_complete(remote_sweep):
    root, uri, out = remote_sweep
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.rstrip().endswith(f"run directory: {uri}")
    store = root / "store" / "t1"
    for name in (*RunLayout.REQUIRED, RunLayout.RESULTS, RunLayout.LOG):
        assert (store / name).is_file(), name
    assert (store / "ensemble" / "ensemble.json").is_file() and (store / "bundle" / "manifest.json").is_file()
    assert not [p for p in store.iterdir() if p.name.startswith(".bundle")]  # no export in progress left behind
    from ferray.run.status import get_status

    laptop = pull_run(uri, root / "laptop" / "t1", weights=False)
    status = get_status(laptop)
    assert status["counts"].get("COMPLETED", 0) >= 1 and sum(status["counts"].values()) == 2
    for trial in status["trials"]:
        on_storage = TrialLayout(store / trial["trial_id"])
        assert on_storage.config.is_file() and on_storage.checkpoints.is_dir()
        if trial["state"] == "COMPLETED":  # the fold workers wrote these through pyarrow, not to Tune's trial dir
            for path in (
                on_storage.oof,
                on_storage.holdout,
                on_storage.metrics,
                on_storage.weights(0),
                on_storage.weights(1),
            ):
                assert path.is_file(), path
            assert (laptop / trial["trial_id"] / TrialLayout.OOF).is_file()
            assert not (laptop / trial["trial_id"] / TrialLayout.WEIGHTS).exists()
    from ferray.pipeline import ensemble_members_available

    assert ensemble_members_available(laptop) >= 1


@pytest.mark.timeout(900)
def test_a_new_name_is_required_and_the_sweep_resumes_from_storage(remote_sweep):
    root, uri, first = remote_sweep
    assert first.returncode == 0
    again = _job(["search", "tiny.yaml", "--storage", uri.rsplit("/", 1)[0], "--name", "t1"], root)
    assert (
        again.returncode == 2
        and f"{uri} already holds a sweep (or part of one): continue it with `ferray "
        f"submit --resume {uri} --address ...`, or pass another --name"
        in again.stdout
    )
    work = root / "elsewhere"  # a new job: nothing of the first one's local folder
    work.mkdir()
    out = _job(["resume", uri, "--extend", "1", "--no-finish"], work)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "resuming" in out.stdout
    from ferray.run.status import get_status

    status = get_status(pull_run(uri, root / "laptop2" / "t1", weights=False))
    assert sum(status["counts"].values()) == 3
