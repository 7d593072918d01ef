"""FoldTrainer: one fold's training, without Ray."""

import copy

import numpy as np
import pytest
import torch

from ferray.data import generate, plan_folds
from ferray.errors import ConfigError
from ferray.training import build_model
from ferray.training._fold import FoldTrainer, NonFiniteLossError
from ferray.training.config import TrainConfig


@pytest.fixture(scope="module")
def data():
    return generate(count=140, size=48, seed=0)


def config(**sections) -> TrainConfig:
    base = {
        "model": {"backbone": "test_resnet"},
        "run": {"epochs": 3, "batch_size": 16, "max_steps_per_epoch": 3},
        "augment": {"strength": 0.5, "mixup_alpha": 0.2, "tta": ["hflip"]},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return TrainConfig.model_validate(base)


def test_restored_trainer_continues_exactly_like_an_uninterrupted_one(data):
    torch.set_num_threads(1)
    plan = plan_folds(data, 2, seed=0)
    cfg = config(optim={"ema_decay": 0.9})
    straight = FoldTrainer(cfg, data, plan.train_index(1), plan.val_index(1), fold=1)
    straight.train_epoch(0)
    state = copy.deepcopy(straight.state_dict())  # state_dict holds live tensors
    expected = straight.train_epoch(1).train_loss

    resumed = FoldTrainer(cfg, data, plan.train_index(1), plan.val_index(1), fold=1)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    assert resumed.train_epoch(1).train_loss == pytest.approx(expected, rel=1e-5)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_metrics_and_tta_probabilities(data):
    plan = plan_folds(data, 2, seed=0)
    trainer = FoldTrainer(config(), data, plan.train_index(0), plan.val_index(0), fold=0)
    trainer.train_epoch(0)
    probs, au = trainer.predict(plan.val_index(0), tta=["hflip", "multicrop"])
    assert probs.shape == (len(plan.val_index(0)), data.num_classes) and au is None
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    metrics = trainer.evaluate()
    assert set(metrics) == {"loss", "accuracy", "macro_f1"}
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_multitask_head_reports_au_f1(data):
    plan = plan_folds(data, 2, seed=0)
    trainer = FoldTrainer(
        config(model={"head": "au_attention", "au_weight": 0.5}), data, plan.train_index(0), plan.val_index(0), fold=0
    )
    trainer.train_epoch(0)
    assert "au_f1" in trainer.evaluate()


def test_nan_weights_stop_training_with_the_reason(data, tmp_path):
    # A corrupt local "pretrained" file: every weight NaN.
    cfg = config()
    model = build_model(cfg.model, num_classes=data.num_classes, in_chans=1, img_size=48)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "corrupt.pth"
    torch.save(state, path)
    cfg = config(model={"pretrained": str(path)})
    trainer = FoldTrainer(cfg, data, np.arange(100), np.arange(100, 140), fold=0)
    with pytest.raises(NonFiniteLossError, match=r"fold 0: training loss became nan at epoch 1, step 1"):
        trainer.train_epoch(0)


def test_missing_pretrained_file_and_au_head_without_aus_are_config_errors(data):
    with pytest.raises(ValueError, match="pretrained weights file '/nope/w.pth' does not exist"):
        config(model={"pretrained": "/nope/w.pth"})
    no_aus = data.subset(np.arange(len(data)))
    object.__setattr__(no_aus, "aus", None)
    with pytest.raises(ConfigError, match="needs action-unit labels"):
        FoldTrainer(config(model={"head": "multitask"}), no_aus, np.arange(100), np.arange(100, 140))


def test_a_fold_state_round_trips_through_the_safe_loader(data, tmp_path):
    from ferray.training.checkpoint import load_fold_state, save_fold_state

    plan = plan_folds(data, 2, seed=0)
    trainer = FoldTrainer(config(optim={"ema_decay": 0.9}), data, plan.train_index(0), plan.val_index(0), fold=0)
    trainer.train_epoch(0)
    history = [{"epoch": 1, "metric": 0.25, "final": False, "stopped_early": False}]
    save_fold_state(
        {"trainer": trainer.state_dict(), "history": history, "best": 0.25, "best_epoch": 1, "since_best": 0},
        tmp_path / "fold_0.pt",
    )
    state = load_fold_state(tmp_path / "fold_0.pt")
    assert state["history"] == history
    restored = FoldTrainer(config(optim={"ema_decay": 0.9}), data, plan.train_index(0), plan.val_index(0), fold=0)
    restored.load_state_dict(state["trainer"])
    assert restored.epoch == 1


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_a_checkpoint_holding_a_pickled_payload_is_refused_and_not_executed(tmp_path, monkeypatch):
    from ferray.errors import DataError
    from ferray.training.checkpoint import load_fold_state

    monkeypatch.chdir(tmp_path)
    torch.save({"trainer": _Payload()}, tmp_path / "fold_0.pt")  # what a tampered run folder could hold
    with pytest.raises(DataError, match=r"fold_0\.pt: not a ferray checkpoint that can be loaded safely"):
        load_fold_state(tmp_path / "fold_0.pt")
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_a_truncated_checkpoint_names_the_file(tmp_path):
    from ferray.errors import DataError
    from ferray.training.checkpoint import load_fold_state, save_fold_state

    save_fold_state({"history": [], "trainer": {"epoch": 1}}, tmp_path / "fold_1.pt")
    (tmp_path / "fold_1.pt").write_bytes((tmp_path / "fold_1.pt").read_bytes()[:40])
    with pytest.raises(DataError, match=r"fold_1\.pt"):
        load_fold_state(tmp_path / "fold_1.pt")
