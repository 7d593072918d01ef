"""Tiny real trial folders and one shared exported bundle, for tests/export and tests/predict.

Trials are real FERModels (timm's ``test_resnet`` / ``mobilenetv3_small_050``, random
weights with a sharpened emotion head so probabilities differ between images) saved with
:func:`ferray.training.weights.save_weights`: a data fixture, not a fake trainer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CLASSES = ["angry", "happy", "neutral", "sad"]
SIZE = 48
FINGERPRINT = "fp-test-0001"

_CACHE: dict[str, dict] = {}


def make_trial(folder: Path, backbone: str = "test_resnet", *, k: int = 2, seed: int = 0, size: int = SIZE,
               channels: int = 1, classes: list[str] | None = None, cv: float | None = 0.5,
               sharpen: float = 40.0) -> Path:
    """A finished trial folder: ``weights/fold_<i>.safetensors`` (+ ``metrics.json`` when ``cv``)."""
    from ferray.layout import TrialLayout
    from ferray.training.config import TrainConfig
    from ferray.training.models import build_model
    from ferray.training.weights import save_weights

    classes = list(classes or CLASSES)
    cfg = TrainConfig.model_validate({"model": {"backbone": backbone, "pretrained": False},
                                      "folds": {"k": max(k, 2), "seed": 7}, "run": {"metric": "accuracy"}})
    layout = TrialLayout(folder)
    for fold in range(k):
        torch.manual_seed(seed * 100 + fold)
        model = build_model(cfg.model, num_classes=len(classes), in_chans=channels, img_size=size)
        with torch.no_grad():
            model.emotion_head.weight.mul_(sharpen)
        meta = {"train": cfg.model_dump(mode="json"), "num_classes": len(classes), "in_chans": channels,
                "img_size": size, "class_names": classes, "fold": fold, "k": k, "ema": False,
                "normalise": {"mean": 0.5, "std": 0.5}, "data_fingerprint": FINGERPRINT}
        save_weights(model, layout.weights(fold), meta)
    if cv is not None:
        layout.metrics.write_text(json.dumps({"class_names": classes, "oof": {"accuracy": cv, "macro_f1": cv - 0.1}}))
    return folder


def torch_member_probs(trial: Path, images: np.ndarray) -> np.ndarray:
    """Mean softmax of a trial's fold models on ``uint8 (N, H, W, C)``, through training's eval path."""
    from ferray.training.augment import build_eval_transform
    from ferray.training.tta import predict_proba
    from ferray.training.weights import load_fold_models

    models = load_fold_models(trial)
    tf = build_eval_transform(images.shape[1], images.shape[3])
    return np.mean([predict_proba(m, images, tf, tta=())[0] for m in models], axis=0)


def random_images(n: int, seed: int = 0, size: int = SIZE, channels: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def shared_bundle(tmp_path_factory) -> dict:
    """One greedy bundle of 2 members (2 folds each; a third with weight 0 is pruned) and a student.

    Built once per test session (exporting takes seconds) and shared by tests/export and
    tests/predict; tests that modify it copy it first.
    """
    if "greedy" not in _CACHE:
        from ferray.export import export_bundle

        root = tmp_path_factory.mktemp("shared_bundle")
        t1 = make_trial(root / "trial_a", "test_resnet", seed=1, cv=0.61)
        t2 = make_trial(root / "trial_b", "mobilenetv3_small_050", seed=2, cv=0.58)
        t3 = make_trial(root / "trial_c", "test_resnet", seed=3, cv=0.40)
        student = make_trial(root / "distill", "test_resnet", k=1, seed=4, cv=None)
        lines: list[str] = []
        bundle = export_bundle([t1, t2, t3], root / "bundle", method="greedy", weights=[3, 1, 0],
                               student=student, manifest_extra={"note": "test"}, echo=lines.append)
        _CACHE["greedy"] = {"bundle": bundle, "members": [t1, t2], "pruned": t3, "weights": [0.75, 0.25],
                            "student": student, "root": root, "echo": lines}
    return _CACHE["greedy"]


def torch_ensemble_probs(info: dict, images: np.ndarray) -> np.ndarray:
    """The shared bundle's ensemble in PyTorch: weighted mean of the members' fold means."""
    return sum(w * torch_member_probs(t, images) for w, t in zip(info["weights"], info["members"]))
