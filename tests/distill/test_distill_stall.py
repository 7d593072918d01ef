"""``ferray distill`` is bounded: a student whose Train run freezes (SIGSTOP) at its start fails as stalled.

Only processes below this test's own process (the local Ray it started) are ever frozen.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from ferray.testing import Freezer, processes_below


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ferray_distill_fails_as_stalled_when_its_student_never_reports(tiny_run, capsys, local_ray):
    from ferray.cli import main

    spec = yaml.safe_load(tiny_run.layout.spec.read_text())
    spec["budget"]["startup_timeout_s"] = 10
    tiny_run.layout.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    me = os.getpid()
    with Freezer() as freezer:
        # The student's Train run hangs from its start: its controller and worker freeze as soon as
        # they exist (on a slow machine the limit may pass first; the outcome is the same). They stay
        # frozen until the checks are done: thawed, the abandoned run would go on in this Ray.
        freezer.watch(lambda: processes_below(me, "TrainController", "RayTrainWorker"))
        code = main(["distill", str(tiny_run.root), "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 1, err[-3000:]
        silent = re.search(r"^error: distillation stopped: stalled: no report from the workers for (\d+) s while "
                           r"waiting for the first report \(limit 10 s\) \(budget\.startup_timeout_s / "
                           r"budget\.stall_timeout_s\)$", err, re.M)
        assert silent, err[-3000:]
        assert 10 <= int(silent[1]) <= 15
        assert not tiny_run.layout.distill.exists()
        assert [p.name for p in tiny_run.root.iterdir() if p.name.startswith(".")] == []  # no staging left behind
