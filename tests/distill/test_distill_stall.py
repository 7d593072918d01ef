"""``ferray distill`` is bounded: a student whose Train run freezes (SIGSTOP) at its start fails as stalled.

The command runs in its own process with its own local Ray; only processes below it are ever
frozen, and the test's own process never hosts the frozen run's driver.
"""

from __future__ import annotations

import re

import pytest
import yaml
from _ray_helpers import ferray_cli

from ferray.testing import Freezer, kill_tree, processes_below


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ferray_distill_fails_as_stalled_when_its_student_never_reports(tiny_run, tmp_path):
    spec = yaml.safe_load(tiny_run.layout.spec.read_text())
    spec["budget"]["startup_timeout_s"] = 10
    tiny_run.layout.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    proc = ferray_cli("distill", str(tiny_run.root), "--epochs", "1", "--num-cpus", "2", log=stdout, stderr=stderr)
    try:
        with Freezer() as freezer:
            # The student's Train run hangs from its start: its controller and worker freeze as soon
            # as they exist (on a slow machine the limit may pass first; the outcome is the same).
            freezer.watch(lambda: processes_below(proc.pid, "TrainController", "RayTrainWorker"))
            code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    err = stderr.read_text()
    assert code == 1, err[-3000:]
    silent = re.search(
        r"^error: distillation stopped: stalled: no report from the workers for (\d+) s while "
        r"waiting for the first report \(limit 10 s\) \(budget\.startup_timeout_s / "
        r"budget\.stall_timeout_s\)$",
        err,
        re.M,
    )
    assert silent, err[-3000:]
    assert 10 <= int(silent[1]) <= 15
    assert not tiny_run.layout.distill.exists()
    assert [p.name for p in tiny_run.root.iterdir() if p.name.startswith(".")] == []  # no staging left behind
