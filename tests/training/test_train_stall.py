"""``ferray train`` is bounded: a real run whose fold worker freezes (SIGSTOP) fails as stalled.

Only processes below the ``ferray train`` this test starts (its own local Ray) are ever frozen.
"""

from __future__ import annotations

import json
import re

import pytest
from _ray_helpers import ferray_cli

from ferray.testing import Freezer, kill_tree, processes_below

CONFIG = """\
data: {source: "synthetic:basic7?count=140&size=48&seed=0"}
folds: {k: 2, seed: 0, holdout: none}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.0, tta: []}
run: {epochs: 30, batch_size: 64, amp: "off", channels_last: false}
"""


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ferray_train_fails_as_stalled_when_a_fold_worker_hangs(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG)
    out, stdout, stderr = tmp_path / "out", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    proc = ferray_cli(
        "train", str(config), "--output", str(out), "--num-cpus", "2", "--stall-timeout", "5", log=stdout, stderr=stderr
    )

    def rank_0() -> list[int]:
        # Once the command has printed its first epoch, the fold worker of rank 0 (it writes the
        # run's epoch ledger, its pid on each line) freezes; the other waits for it in the next
        # epoch's metric exchange, and no report comes.
        if not re.search(r"^epoch +1 ", stdout.read_text(), re.M):
            return []
        pid = json.loads((out / "epochs.jsonl").read_text().splitlines()[0])["pid"]
        return [pid] if pid in processes_below(proc.pid, "RayTrainWorker") else []

    try:
        with Freezer() as freezer:
            freezer.watch(rank_0, once=True)
            code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    err = stderr.read_text()
    assert freezer.frozen, err[-3000:]
    assert code == 1, err[-3000:]
    silent = re.search(
        r"^error: training stopped: stalled: no report from the workers for (\d+) s while waiting "
        r"for a report \(limit 5 s\)$",
        err,
        re.M,
    )
    assert silent, err[-3000:]
    assert 5 <= int(silent[1]) <= 10
    assert "--stall-timeout" in err.splitlines()[-1]
    assert len((out / "epochs.jsonl").read_text().splitlines()) < 30


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_ferray_train_refuses_a_bound_that_is_not_seconds_above_zero(value, capsys):
    from ferray.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "train.yaml", "--stall-timeout", value])
    assert exit_.value.code == 2
    assert f"--stall-timeout: {value!r} is not a number of seconds > 0" in capsys.readouterr().err
