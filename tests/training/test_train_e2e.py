"""End to end: ``ferray train`` with k=3 fold workers on a real local Ray with 2 CPUs."""

import json

import numpy as np
import pytest
import torch
from _ray_helpers import run_ferray

from ferray.data import FoldPlan, load_source
from ferray.run.predictions import read_predictions

pytestmark = pytest.mark.ray

CONFIG = """\
data:
  source: "synthetic:basic7?count=350&size=48&seed=3"
folds: {k: 3, seed: 0, holdout: 0.2}
model: {backbone: resnet10t, drop_rate: 0.1}
loss: {name: focal, focal_gamma: 2.0}
augment: {strength: 0.3, mixup_alpha: 0.2, tta: [hflip]}
optim: {lr: 0.002, ema_decay: 0.9, schedule: {name: cosine, warmup_epochs: 0.5}}
run: {epochs: 2, batch_size: 32}
"""


def test_ferray_train_runs_three_folds_in_parallel_and_leaves_the_contract(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "run"
    proc = run_ferray("train", str(config), "--output", str(out), "--num-cpus", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    epoch_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch")]
    assert len(epoch_lines) == 2, proc.stdout
    assert all("accuracy" in ln and "±" in ln for ln in epoch_lines)

    # Checkpoints: the last epoch's (num_to_keep=1) holds each fold's full training state.
    epochs = sorted(p.name for p in (out / "checkpoints").glob("epoch_*"))
    assert epochs == ["epoch_0002"]
    state = torch.load(out / "checkpoints" / "epoch_0002" / "fold_2.pt", weights_only=False)
    assert state["trainer"]["epoch"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "torch_rng"} <= set(state["trainer"])
    history = state["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    for report in history:
        folds = [report[f"val_accuracy_fold{i}"] for i in range(3)]
        assert report["val_accuracy_mean"] == pytest.approx(np.mean(folds))
        assert report["val_accuracy_std"] == pytest.approx(np.std(folds))
        assert 0.0 <= report["metric"] <= 1.0

    # Out-of-fold predictions: each cross-validation row exactly once, by the fold that did not train on it.
    data = load_source("synthetic:basic7?count=350&size=48&seed=3")
    plan = FoldPlan.load(out / "folds.parquet")
    plan.check_matches(data)
    oof = read_predictions(out / "oof.parquet")
    assert np.array_equal(oof.rows, plan.cv_index)
    assert np.array_equal(oof.folds, plan.fold[oof.rows])
    assert np.array_equal(oof.labels, data.labels[oof.rows])
    assert np.allclose(oof.probs.sum(axis=1), 1.0, atol=1e-4)
    assert list(oof.ids) == list(data.ids[oof.rows])
    holdout = read_predictions(out / "holdout.parquet")
    assert len(holdout) == 3 * len(plan.holdout_index)
    assert sorted(set(holdout.folds.tolist())) == [0, 1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["oof_per_class"]) == set(data.class_names)
    assert metrics["oof"]["accuracy"] == pytest.approx(history[-1]["oof_accuracy"])
    assert "holdout" in metrics


def test_a_loss_that_becomes_nan_stops_the_trial_with_its_reason(tmp_path):
    from ferray.training import build_model
    from ferray.training.config import ModelConfig

    # A corrupt local weights file (every weight NaN) makes the first loss NaN in every fold.
    model = build_model(ModelConfig(backbone="test_resnet"), num_classes=7, in_chans=1, img_size=48)
    weights = tmp_path / "corrupt.pth"
    torch.save(
        {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in model.state_dict().items()},
        weights,
    )
    config = tmp_path / "nan.yaml"
    config.write_text(
        'data: {source: "synthetic:basic7?count=140&size=48"}\n'
        f"model: {{backbone: test_resnet, pretrained: '{weights}'}}\n"
        "folds: {k: 2}\nrun: {epochs: 2, batch_size: 16}\n"
    )
    proc = run_ferray("train", str(config), "--output", str(tmp_path / "run"), "--num-cpus", "2", timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "training stopped: fold" in proc.stderr
    assert "training loss became nan at epoch 1, step 1" in proc.stderr


def test_unknown_backbone_fails_before_ray_starts(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  backbone: resnet181\n")
    proc = run_ferray("train", str(config), timeout=120)
    assert proc.returncode == 2
    assert "unknown backbone 'resnet181'; did you mean 'resnet18'" in proc.stderr
    assert "ray" not in proc.stderr.lower()


# -- learning floor through the fold workers (Ray Train), and its shuffled-label control ------------

LEARN = """\
data: {{source: "synthetic:basic7?count=1400&size=48&difficulty=0&seed=0{shuffle}"}}
folds: {{k: 2, seed: 0, holdout: none}}
model: {{backbone: test_resnet, pretrained: false}}
augment: {{strength: 0.0, tta: []}}
optim: {{lr: 0.003}}
run: {{epochs: 6, batch_size: 32, amp: "off", channels_last: false}}
"""
#: The configuration of tests/training/test_learning.py (FoldTrainer alone: per fold 0.56-0.72 over
#: 8 seeds, shuffled 0.12-0.16; chance 0.143), here trained by `ferray train`'s fold workers.
FLOOR, CEILING = 0.40, 0.25


@pytest.mark.timeout(600)
@pytest.mark.parametrize("shuffled", [False, True], ids=["true-labels", "shuffled-labels"])
def test_fold_workers_learn_far_above_chance_and_only_from_the_labels(tmp_path, shuffled):
    """Guards image/label alignment through the Ray object store, the fold workers' loaders, the
    gathered OOF rows and metrics.json: the true labels clear the floor, shuffled ones stay near chance."""
    config = tmp_path / "learn.yaml"
    config.write_text(LEARN.format(shuffle="&shuffle_labels=1000" if shuffled else ""))
    out = tmp_path / "run"
    proc = run_ferray("train", str(config), "--output", str(out), "--num-cpus", "2", timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    oof = read_predictions(out / "oof.parquet")
    data = load_source(LEARN.format(shuffle="&shuffle_labels=1000" if shuffled else "").split('"')[1])
    assert np.array_equal(oof.labels, data.labels[oof.rows])
    accuracy = float((oof.probs.argmax(axis=1) == oof.labels).mean())
    assert accuracy == pytest.approx(metrics["oof"]["accuracy"], abs=1e-6)
    if shuffled:
        assert accuracy < CEILING, f"shuffled labels: OOF accuracy {accuracy:.3f}, expected near chance"
    else:
        assert accuracy > FLOOR, f"OOF accuracy {accuracy:.3f} below the floor {FLOOR} (chance 0.143)"
