"""Fixtures for the explain tests: tiny real FERModels, a run folder and a bundle built from them.

The run is data, not a fake trainer: two trials of real ``test_resnet`` FERModels (random
weights, 2 folds, 48x48 grey) saved with :func:`ferray.training.weights.save_weights`, the
packaged quickstart spec, a ``results.parquet`` from :class:`ferray.run.ResultsTable` and
an ``ensemble.json`` with greedy weights; the bundle comes from the real
:func:`ferray.export.export_bundle`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from _fer_helpers import one_torch_thread  # noqa: F401 - autouse: one torch thread for these tests

CLASSES = ["angry", "happy", "neutral", "sad"]
WEIGHTS = [0.75, 0.25]


def make_trial(folder: Path, seed: int, *, backbone: str = "test_resnet", k: int = 2) -> Path:
    import torch

    from ferray.run.layout import TrialLayout
    from ferray.training.config import TrainConfig
    from ferray.training.models import build_model
    from ferray.training.weights import save_weights

    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False},
            "folds": {"k": 2, "seed": 0},
            "data": {"source": "synthetic:basic7"},
        }
    )
    for fold in range(k):
        torch.manual_seed(seed * 10 + fold)
        model = build_model(cfg.model, num_classes=len(CLASSES), in_chans=1, img_size=48)
        with torch.no_grad():
            model.emotion_head.weight.mul_(20.0)  # probabilities that differ between images
        meta = {
            "train": cfg.model_dump(mode="json"),
            "num_classes": len(CLASSES),
            "in_chans": 1,
            "img_size": 48,
            "class_names": CLASSES,
            "fold": fold,
            "k": k,
            "ema": False,
            "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": "fp-explain",
        }
        save_weights(model, TrialLayout(folder).weights(fold), meta)
    TrialLayout(folder).config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return folder


@pytest.fixture(scope="session")
def explain_run(tmp_path_factory) -> Path:
    """A run with two finished trials and a greedy ensemble of them (weights 0.75, 0.25)."""
    from ferray.run.layout import RunLayout
    from ferray.run.results import ResultsTable
    from ferray.search import packaged_spec

    run = RunLayout(tmp_path_factory.mktemp("explain") / "run")
    run.root.mkdir()
    run.spec.write_text(Path(packaged_spec("quickstart")).read_text())
    table = ResultsTable()
    for i, tid in enumerate(("t_a", "t_b")):
        make_trial(run.trial(tid).root, seed=i + 1)
        table.add_result(tid, {"optim.lr": 0.01 * (i + 1)}, {"epoch": 1, "metric": 0.6 - 0.1 * i}, number=i)
        table.set_state(tid, "COMPLETED")
    table.write(run.results)
    run.ensemble.mkdir()
    run.ensemble_files.summary.write_text(
        json.dumps({"method": "greedy", "members": ["t_a", "t_b"], "weights": WEIGHTS})
    )
    return run.root


@pytest.fixture(scope="session")
def explain_bundle(explain_run, tmp_path_factory) -> Path:
    from ferray.export import export_bundle, fit_calibration

    # An over-confident ensemble on 300 rows (60% right), so the stored temperature is > 1.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CLASSES), 300)
    guess = np.where(rng.random(300) < 0.6, labels, rng.integers(0, len(CLASSES), 300))
    probs = np.full((300, len(CLASSES)), 0.01)
    probs[np.arange(300), guess] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    run = Path(explain_run)
    return export_bundle(
        [run / "t_a", run / "t_b"],
        tmp_path_factory.mktemp("explain_bundle") / "bundle",
        method="greedy",
        weights=WEIGHTS,
        calibration={"ensemble": fit_calibration(labels, probs)},
    )


@pytest.fixture(scope="session")
def faces() -> np.ndarray:
    """Three synthetic faces, 64x64 RGB: another size and channel count than the models' 48x48 grey."""
    from ferray.data import load_source

    source = "synthetic:basic7?count=7&size=64&channels=3&seed=5&difficulty=0"
    return load_source(source, size=64, channels=3).images[:3]
