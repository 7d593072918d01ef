"""Learning floors: the real training path learns faces' expressions, and only from their labels.

Two ``FoldTrainer`` cross-validations (no Ray) on synthetic faces at difficulty 0, the
tiny ``test_resnet`` from scratch, on CPU: one on the true labels, one on the same faces
with the labels shuffled by a fixed permutation (the source option ``shuffle_labels=SEED``,
the control a user runs). Then the fold predictions go through
the trial's out-of-fold writer (``_write_outputs``, what a trial's rank 0 runs) into
``oof.parquet``.

What it guards:

* true labels, accuracy far above chance (1/7): images and labels stay aligned through
  the fold plan's indices, the loader (``_Rows``, sampler, transforms), the model and the
  evaluation; and the OOF writer puts each fold's predictions on that fold's rows (a row
  shift or a fold's probabilities on another fold's rows scores at chance);
* shuffled labels, accuracy near chance: the floor's score comes from learning image-label
  pairs. A metric or writer that scored the labels instead of the model's answers, or
  labels leaking into what the model sees, would pass the floor and fail here.

Measured with this module's ``DATA`` and ``CONFIG`` (K = 2 folds of 700 rows, 6 epochs,
CPU, one torch thread) for seeds 0..7 (seed = data, fold plan and training seed; the test
runs seed 0), chance being 0.143:

* true labels: per fold 0.56-0.72 (seed 0: 0.70, 0.61); OOF file 0.59-0.68 (seed 0: 0.65);
* shuffled labels: per fold 0.12-0.16 (seed 0: 0.16, 0.13); OOF file 0.13-0.16 against the
  shuffled labels, 0.12-0.15 against the true ones (seed 0: 0.15, 0.14);

hence :data:`FLOOR` 0.40 and :data:`CEILING` 0.25. Faults put in by hand fail it: a loader
pairing each image with the next row's label (per fold 0.16 and 0.13), a writer swapping
the two folds' probabilities (folds 0.70 and 0.61, OOF file 0.14).
About 30 s of CPU in all (12-16 s per cross-validation, the faces 0.7 s).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _fer_helpers import one_torch_thread  # noqa: F401 - autouse: one torch thread for these tests

from ferray.data import FERData, load_source, plan_folds
from ferray.run.predictions import read_predictions
from ferray.training._fold import FoldTrainer
from ferray.training._worker import _write_outputs
from ferray.training.config import TrainConfig

SEED = 0
K = 2
#: Synthetic faces at difficulty 0: clear prototypes, pose and light varying a little.
DATA = "synthetic:basic7?count=1400&size=48&difficulty=0&seed={seed}"
CONFIG = {
    "model": {"backbone": "test_resnet", "pretrained": False},
    "run": {"epochs": 6, "batch_size": 32, "amp": "off", "channels_last": False},
    "optim": {"lr": 3e-3},
    "augment": {"strength": 0.0, "tta": []},
}
CHANCE = 1 / 7
#: Below every accuracy measured on the true labels (0.56 and up), 2.8 times chance.
FLOOR = 0.40
#: Above every accuracy measured on shuffled labels (0.16 at most), well below the floor.
CEILING = 0.25


def faces(seed: int = SEED, shuffle_labels: int | None = None) -> FERData:
    """The faces of ``DATA``; with ``shuffle_labels``, each with another face's label (class counts kept)."""
    source = DATA.format(seed=seed)
    return load_source(source if shuffle_labels is None else f"{source}&shuffle_labels={shuffle_labels}")


def cross_validate(data: FERData, out_dir, seed: int = SEED) -> tuple[list[float], np.ndarray]:
    """Each fold's validation accuracy; the fold plan. Writes ``out_dir/oof.parquet`` as a trial does."""
    plan = plan_folds(data, K, seed=seed, holdout="none")
    cfg = TrainConfig.model_validate({**CONFIG, "run": {**CONFIG["run"], "seed": seed}})
    accuracies, gathered = [], []
    for fold in range(K):
        trainer = FoldTrainer(cfg, data, plan.train_index(fold), plan.val_index(fold), fold=fold, device="cpu")
        for epoch in range(cfg.run.epochs):
            trainer.train_epoch(epoch)
        probs, _ = trainer.predict(trainer.val_index)
        accuracies.append(trainer.metrics_of(trainer.val_index, probs, None)["accuracy"])
        gathered.append((fold, probs, None, np.zeros((0, data.num_classes), np.float32), None, "local"))
    _write_outputs(gathered, trainer, data, plan.fold, [], {"output_dir": str(out_dir)}, time.perf_counter())
    return accuracies, plan.fold


def oof_accuracy(out_dir, labels: np.ndarray) -> float:
    """Accuracy of ``oof.parquet`` against ``labels`` of the rows it names (not the labels it holds)."""
    oof = read_predictions(out_dir / "oof.parquet")
    return float(np.mean(oof.probs.argmax(axis=1) == labels[oof.rows]))


@pytest.fixture(scope="module")
def data() -> FERData:
    return faces()


def test_true_labels_are_learned_far_above_chance_and_the_oof_file_keeps_them_on_their_rows(data, tmp_path):
    accuracies, fold = cross_validate(data, tmp_path)
    assert min(accuracies) > FLOOR, f"fold accuracies {accuracies}, chance {CHANCE:.3f}"
    oof = read_predictions(tmp_path / "oof.parquet")
    assert np.array_equal(oof.rows, np.arange(len(data))) and np.array_equal(oof.folds, fold)
    assert np.array_equal(oof.labels, data.labels)
    assert oof_accuracy(tmp_path, data.labels) > FLOOR
    # the file's accuracy is the folds' (each fold validates half of the rows)
    assert oof_accuracy(tmp_path, data.labels) == pytest.approx(np.mean(accuracies), abs=0.01)


def test_shuffled_labels_stay_near_chance(data, tmp_path):
    noise = faces(shuffle_labels=SEED + 1000)
    assert np.array_equal(noise.images, data.images)
    assert np.mean(noise.labels == data.labels) < 0.2  # most faces carry another class's label
    accuracies, _ = cross_validate(noise, tmp_path)
    assert max(accuracies) < CEILING, f"fold accuracies {accuracies}, chance {CHANCE:.3f}"
    assert oof_accuracy(tmp_path, noise.labels) < CEILING  # the labels it was trained on
    assert oof_accuracy(tmp_path, data.labels) < CEILING  # the faces' true classes
