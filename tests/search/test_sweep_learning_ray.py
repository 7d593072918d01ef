"""A short sweep on shuffled labels stays near chance: the control of the sweep's learning floor.

`test_kill_anywhere_ray.py`'s uninterrupted sweep must clear ``SWEEP_FLOOR`` on the synthetic
faces; the same sweep whose labels are shuffled (images kept, each label moved to another
row) must not. Together they catch a sweep that scores images against the wrong labels
anywhere between the data the driver loads, the object store, the trial's fold workers, and
the fold-mean metric Tune and Optuna are told.
"""

from __future__ import annotations

import pytest
from _ray_helpers import run_ferray

from ferray.run.results import read_results

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

SPEC = """\
name: shuffled
data: {source: "synthetic:basic7?count=1400&size=48&seed=0&difficulty=0&shuffle_labels=1000"}
folds: {k: 2, seed: 0, holdout: 0.15}
model: {backbone: test_resnet, pretrained: false}
augment: {strength: 0.0, tta: []}
run: {batch_size: 32, amp: "off", channels_last: false}
space:
  optim.lr: {type: float, low: 3.0e-3, high: 1.0e-2, log: true}
budget: {trials: 2, max_epochs: 5, early_stopping: false, max_concurrent: 1}
search: {sampler: random, seed: 0}
ensemble: {enabled: false}
distill: {enabled: false}
"""
#: FoldTrainer alone on these shuffled faces: 0.12-0.16 over 8 seeds (chance 0.143).
CEILING = 0.25


def test_a_sweep_on_shuffled_labels_stays_near_chance(tmp_path):
    spec = tmp_path / "shuffled.yaml"
    spec.write_text(SPEC)
    proc = run_ferray(
        "search",
        str(spec),
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "shuffled",
        "--no-live",
        "--num-cpus",
        "2",
        timeout=540,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = read_results(tmp_path / "runs" / "shuffled" / "results.parquet")
    finals = {r["trial_id"]: r for r in rows if r["state"] == "COMPLETED"}
    assert len(finals) == 2, rows
    best = max(max(r["metric"] for r in rows if r["trial_id"] == tid) for tid in finals)
    assert best < CEILING, f"shuffled labels: best fold-mean accuracy {best:.3f}, expected near chance (0.143)"
