"""The device-resident data path of the fold trainer: when it is chosen, and that it trains as the loader does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _fer_helpers import one_torch_thread  # noqa: F401 - autouse: one torch thread for these tests

from ferray.data import generate, load_source, plan_folds
from ferray.training import build_eval_transform
from ferray.training._fold import FoldTrainer
from ferray.training.config import TrainConfig
from ferray.training.resident import choose_data_path, resident_images


@pytest.fixture(scope="module")
def data():
    return generate(count=120, size=48, seed=0)


def config(**run) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"backbone": "test_resnet"},
            "run": {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 3, "amp": "off", **run},
            "augment": {"strength": 0.5, "tta": []},
        }
    )


@pytest.mark.parametrize(
    ("mode", "device", "nbytes", "workers", "expected"),
    [
        ("auto", "cuda", 100, 0, "device"),
        ("auto", "cuda", 1001, 4, "loader"),  # over the budget
        ("auto", "cpu", 100, 0, "device"),
        ("auto", "cpu", 1001, 0, "loader"),
        ("auto", "cpu", 100, 2, "loader"),  # CPU loader workers augment in parallel with the step
        ("device", "cpu", 10**12, 2, "device"),
        ("loader", "cuda", 1, 0, "loader"),
    ],
)
def test_the_data_path_chosen(mode, device, nbytes, workers, expected):
    assert choose_data_path(mode, device, nbytes=nbytes, budget=1000, loader_workers=workers) == expected


def test_the_trainer_falls_back_to_the_loader_when_its_images_exceed_the_budget(data):
    index = np.arange(100)
    need = 100 * 48 * 48  # uint8 grayscale
    over = FoldTrainer(config(), data, index, np.arange(100, 120), device="cpu", data_budget=need - 1)
    fits = FoldTrainer(config(), data, index, np.arange(100, 120), device="cpu", data_budget=need)
    assert (over.data_path, fits.data_path) == ("loader", "device")
    assert over.train_epoch(0).images == fits.train_epoch(0).images == 48


def test_unknown_data_path_is_a_config_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"run\.data_path\n  Input should be 'auto', 'device' or 'loader'"):
        TrainConfig.model_validate({"run": {"data_path": "gpu"}})


def test_resident_images_are_the_eval_transforms_prepared_images():
    images = np.random.default_rng(1).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    out = resident_images(images, np.array([2, 0]), 48, 1)
    assert out.shape == (2, 1, 48, 48) and out.dtype == np.uint8
    prepare = build_eval_transform(48, 1).prepare
    assert np.array_equal(out[0], prepare(images[2]).transpose(2, 0, 1))
    assert np.array_equal(out[1], prepare(images[0]).transpose(2, 0, 1))


@pytest.mark.parametrize("head", ["emotion", "multitask"])
def test_at_strength_zero_both_paths_train_identically(data, head):
    # Same rows in the same order and, without augmentation, the same inputs: the same losses.
    cfgs = [
        TrainConfig.model_validate(
            {
                "model": {"backbone": "test_resnet", "head": head},
                "run": {"batch_size": 16, "max_steps_per_epoch": 3, "amp": "off", "data_path": path},
                "augment": {"strength": 0.0, "tta": []},
                "loss": {"balanced_sampling": head == "multitask"},
            }
        )
        for path in ("device", "loader")
    ]
    device, loader = (FoldTrainer(cfg, data, np.arange(100), np.arange(100, 120), device="cpu") for cfg in cfgs)
    assert (device.data_path, loader.data_path) == ("device", "loader")
    for epoch in range(2):
        assert device.train_epoch(epoch).train_loss == pytest.approx(loader.train_epoch(epoch).train_loss, rel=1e-5)
    for a, b in zip(device.model.parameters(), loader.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_the_device_path_replays_an_epoch_exactly(data):
    cfg = config(data_path="device")
    a = FoldTrainer(cfg, data, np.arange(100), np.arange(100, 120), device="cpu")
    b = FoldTrainer(cfg, data, np.arange(100), np.arange(100, 120), device="cpu")
    assert a.train_epoch(0).train_loss == b.train_epoch(0).train_loss
    batches = [torch.cat([x for x, _, _ in t.train_batches(1)]) for t in (a, b)]
    assert torch.equal(*batches)
    assert not torch.equal(batches[0], torch.cat([x for x, _, _ in a.train_batches(2)]))


def test_the_device_path_learns_faces_far_above_chance_with_augmentation():
    # Synthetic faces at difficulty 0, one fold of two (700 training rows), test_resnet from
    # scratch, augmentation strength 0.2. Measured on CPU for seeds 0..2: validation accuracy
    # 0.59, 0.48, 0.50 (the loader path: 0.59, 0.48); chance is 1/7 = 0.14.
    data = load_source("synthetic:basic7?count=1400&size=48&difficulty=0&seed=0")
    plan = plan_folds(data, 2, seed=0, holdout="none")
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": "test_resnet", "pretrained": False},
            "run": {"epochs": 6, "batch_size": 32, "amp": "off", "channels_last": False, "data_path": "device"},
            "optim": {"lr": 3e-3},
            "augment": {"strength": 0.2, "tta": []},
        }
    )
    trainer = FoldTrainer(cfg, data, plan.train_index(0), plan.val_index(0), fold=0, device="cpu")
    assert trainer.data_path == "device"
    for epoch in range(cfg.run.epochs):
        trainer.train_epoch(epoch)
    accuracy = trainer.evaluate()["accuracy"]
    assert accuracy > 0.35, f"validation accuracy {accuracy:.3f}, chance {1 / 7:.3f}"
