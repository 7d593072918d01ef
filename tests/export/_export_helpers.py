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


def make_trial(
    folder: Path,
    backbone: str = "test_resnet",
    *,
    k: int = 2,
    seed: int = 0,
    size: int = SIZE,
    channels: int = 1,
    classes: list[str] | None = None,
    cv: float | None = 0.5,
    sharpen: float = 40.0,
) -> Path:
    """A finished trial folder: ``weights/fold_<i>.safetensors`` (+ ``metrics.json`` when ``cv``)."""
    from ferray.run.layout import TrialLayout
    from ferray.training.config import TrainConfig
    from ferray.training.models import build_model
    from ferray.training.weights import save_weights

    classes = list(classes or CLASSES)
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False},
            "folds": {"k": max(k, 2), "seed": 7},
            "run": {"metric": "accuracy"},
        }
    )
    layout = TrialLayout(folder)
    for fold in range(k):
        torch.manual_seed(seed * 100 + fold)
        model = build_model(cfg.model, num_classes=len(classes), in_chans=channels, img_size=size)
        with torch.no_grad():
            model.emotion_head.weight.mul_(sharpen)
        meta = {
            "train": cfg.model_dump(mode="json"),
            "num_classes": len(classes),
            "in_chans": channels,
            "img_size": size,
            "class_names": classes,
            "fold": fold,
            "k": k,
            "ema": False,
            "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": FINGERPRINT,
        }
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
        bundle = export_bundle(
            [t1, t2, t3],
            root / "bundle",
            method="greedy",
            weights=[3, 1, 0],
            student=student,
            manifest_extra={"note": "test"},
            echo=lines.append,
        )
        _CACHE["greedy"] = {
            "bundle": bundle,
            "members": [t1, t2],
            "pruned": t3,
            "weights": [0.75, 0.25],
            "student": student,
            "root": root,
            "echo": lines,
        }
    return _CACHE["greedy"]


def torch_ensemble_probs(info: dict, images: np.ndarray) -> np.ndarray:
    """The shared bundle's ensemble in PyTorch: weighted mean of the members' fold means."""
    return sum(w * torch_member_probs(t, images) for w, t in zip(info["weights"], info["members"]))


def softmax_t(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` written out here, independent of ferray's implementation."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def calibrated_run(tmp_path_factory) -> dict:
    """A run whose chosen greedy ensemble has out-of-fold and holdout predictions, exported once.

    The predictions files (:mod:`ferray.run.predictions` format) hold seeded, varied
    probabilities with labels drawn from the softened ``softmax(log p / 3)``: over-confident
    probabilities, so the fitted temperature is well above 1. One fold per member and no
    student keep the export short (the shared bundle has a student).
    """
    if "calibrated" not in _CACHE:
        from ferray.export import export_run
        from ferray.run.layout import RunLayout
        from ferray.run.predictions import Predictions, write_predictions

        run = RunLayout(tmp_path_factory.mktemp("calibrated") / "exp")
        ids = ["t00001", "t00002"]
        make_trial(run.root / ids[0], "test_resnet", k=1, seed=11)
        make_trial(run.root / ids[1], "test_resnet", k=1, seed=12)
        run.ensemble.mkdir(parents=True)
        run.ensemble_files.summary.write_text(json.dumps({"method": "greedy", "members": ids, "weights": [0.75, 0.25]}))
        rng = np.random.default_rng(0)
        written = {}
        for kind, n, path in (("oof", 400, run.ensemble_files.oof), ("holdout", 100, run.ensemble_files.holdout)):
            z = rng.normal(0, 2.0, (n, len(CLASSES)))
            probs = softmax_t(np.exp(z), 1.0).astype(np.float32)
            labels = (softmax_t(probs, 3.0).cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
            rows = np.arange(n) + (0 if kind == "oof" else 1000)
            folds = rows % 2 if kind == "oof" else np.full(n, -1)
            meta = {
                "class_names": CLASSES,
                "k": 2,
                "data_fingerprint": FINGERPRINT,
                "tta": [],
                "kind": kind,
                "ensemble": "greedy",
                "members": ids,
            }
            write_predictions(Predictions(rows, [f"r{r}" for r in rows], folds, labels, probs, None, meta), path)
            written[kind] = (labels, probs)
        bundle = export_run(run.root)
        _CACHE["calibrated"] = {
            "run": run,
            "bundle": bundle,
            "oof": written["oof"],
            "holdout": written["holdout"],
            "members": ids,
        }
    return _CACHE["calibrated"]
