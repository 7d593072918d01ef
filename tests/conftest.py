"""Shared fixtures: the real FER data in ``../shared/datasets`` (or ``$FERRAY_SHARED_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _ray_helpers import ferray_env, run_ferray, start_local_ray

_REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """Where the real FER data lives, or ``None`` when it is absent."""
    root = Path(os.environ.get("FERRAY_SHARED_DATA") or _REPO.parent / "shared" / "datasets")
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real FER data; skips the test when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("real FER data not found: set FERRAY_SHARED_DATA or place it at ../shared/datasets")
    return root


#: Ray test modules that run on a second pytest worker, beside the others (about a third of the Ray
#: tests' time): each local Ray is its own (``address="local"``), and every bound in these tests
#: holds with another test's Ray sharing the cores.
SECOND_RAY_GROUP = ("test_kill_anywhere_ray.py", "test_warm_start_ray.py", "test_multi_objective_ray.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n 2 --dist loadgroup`` the tests that start Ray run in two groups, each one test
    at a time on its own worker, while the rest of the suite fills in around them.

    xdist's scheduler starts the largest groups first, so the Ray tests, the suite's longest chain,
    begin at once. Run alone (``-n 0``), the markers are inert.
    """
    for item in items:
        if item.get_closest_marker("ray") is not None:
            group = "ray-b" if item.path.name in SECOND_RAY_GROUP else "ray"
            item.add_marker(pytest.mark.xdist_group(group))


# -- one real sweep, shared by the end-to-end tests ------------------------------------------------

E2E_SPEC = """\
name: e2e
data: {source: "synthetic:basic7?count=280&size=48&seed=0&difficulty=0.2"}
folds: {k: 2, seed: 0, holdout: 0.15}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.2, tta: [hflip]}
run: {batch_size: 64, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
  loss.name: {type: categorical, choices: [ce, focal]}
  loss.focal_gamma: {type: float, low: 0.5, high: 3.0, when: {loss.name: focal}}
budget: {trials: 8, max_epochs: 3, grace_period: 1, reduction_factor: 2, max_concurrent: 2}
search: {sampler: tpe, seed: 0, n_startup_trials: 3}
tracking:
  wandb: {enabled: true, project: ferray-test, mode: offline}
ensemble: {enabled: true, top_k: 3, methods: [greedy, stacking, mean, vote], export: true}
distill: {enabled: true, student: test_resnet, epochs: 2}
"""


class E2ERun:
    """The shared sweep: ``ferray search`` run once as a user would, output captured."""

    def __init__(self, root: Path, returncode: int, stdout: str, stderr: str, seconds: float):
        self.root, self.returncode, self.stdout, self.stderr, self.seconds = root, returncode, stdout, stderr, seconds
        self.run_dir = root / "runs" / "e2e"

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> E2ERun:
    """``ferray search`` on a tiny spec of 8 trials with sub-second epochs (every trial's end is a
    chance for the end-of-trial report race), with ensemble, distillation and export enabled."""
    import time

    root = tmp_path_factory.mktemp("e2e")
    spec = root / "e2e.yaml"
    spec.write_text(E2E_SPEC)
    start = time.monotonic()
    out = run_ferray(
        "search",
        str(spec),
        "--storage",
        str(root / "runs"),
        "--name",
        "e2e",
        "--no-live",
        "--num-cpus",
        "2",
        env=ferray_env(WANDB_DISABLE_GIT="true", COLUMNS="200"),
        cwd=root,
        timeout=1100,
    )
    return E2ERun(root, out.returncode, out.stdout, out.stderr, time.monotonic() - start)


# -- a local Ray in this process, for the tests that use Ray in-process ------------------------------


@pytest.fixture
def local_ray():
    """A local Ray with 2 CPUs, started in (and so below) this test's process, as ferray starts one.

    One per test (a test's frozen or killed processes are its own), shut down within a bound:
    see :func:`_ray_helpers.start_local_ray`.
    """
    with start_local_ray(num_cpus=2):
        yield
