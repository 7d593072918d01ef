"""A tiny sweep run folder built from real parts: spec, fold plan, one finished trial, an ensemble.

The trial's fold models are real (randomly initialised ``test_resnet``) models whose
weights and holdout predictions are written by ferray's own writers; the ensemble's
predictions are smoothed one-hot labels with some rows pointing at a wrong class (data,
not a fake trainer: the fixed teacher only ever reads probabilities).

:func:`build_trained_run` makes a run whose member trials are really trained (ferray's
:class:`~ferray.training._fold.FoldTrainer`) and whose ``ensemble/`` is written by
``ferray ensemble``'s own :func:`~ferray.ensemble.build_ensembles`: the files and the member
models agree, as the online teacher needs to be judged against the ensemble's predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from ferray.data import FERData, FoldPlan
from ferray.run.layout import EnsembleLayout, RunLayout
from ferray.run.predictions import Predictions, write_predictions

SOURCE = "synthetic:basic7?count=140&size=48&seed=0"
# The trained run (build_trained_run / trained_run): enough faces and epochs for members with opinions.
TRAINED_SOURCE = "synthetic:basic7?count=420&size=48&seed=0&difficulty=0.2"
TRAINED_EPOCHS = 12
TRIALS = ("t0001", "t0002")
TRIAL = TRIALS[0]  # the best trial


@dataclass
class TinyRun:
    layout: RunLayout
    data: FERData
    plan: FoldPlan
    teacher: np.ndarray  # (N, C) ensemble probabilities for every row (holdout rows too)

    @property
    def root(self) -> Path:
        return self.layout.root


def spec_text(source: str = SOURCE, max_epochs: int = 1, batch_size: int = 32) -> str:
    from ferray.search import packaged_spec

    raw = yaml.safe_load(packaged_spec("quickstart").read_text())
    raw["data"]["source"] = source
    raw["budget"].update(trials=2, max_epochs=max_epochs, grace_period=1)
    raw["run"]["batch_size"] = batch_size
    raw["distill"].update(student="test_resnet", epochs=1)
    return yaml.safe_dump(raw, sort_keys=False)


def smoothed_teacher(labels: np.ndarray, num_classes: int, seed: int = 0, wrong: float = 0.2) -> np.ndarray:
    """0.7 on a class (the label, or a wrong class for ``wrong`` of the rows), the rest spread."""
    rng = np.random.default_rng(seed)
    cls = labels.copy()
    flip = rng.random(len(labels)) < wrong
    cls[flip] = (labels[flip] + rng.integers(1, num_classes, flip.sum())) % num_classes
    probs = np.full((len(labels), num_classes), 0.3 / (num_classes - 1), np.float32)
    probs[np.arange(len(labels)), cls] = 0.7
    return probs


def _write_trial(layout: RunLayout, spec, data: FERData, plan: FoldPlan, trial_id: str, seed: int) -> None:
    """One finished trial: k fold models' weights, config, OOF and holdout predictions."""
    import torch

    from ferray.training.augment import build_eval_transform
    from ferray.training.models import build_model
    from ferray.training.tta import predict_proba
    from ferray.training.weights import save_weights

    cfg = spec.base_config().model_copy(deep=True)
    cfg.model.backbone = "test_resnet"
    trial = layout.trial(trial_id)
    trial.root.mkdir(parents=True)
    trial.config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    h, _, c = data.image_shape
    transform = build_eval_transform(h, c)
    hold = plan.holdout_index
    oof = np.zeros((len(data), data.num_classes), np.float32)
    probs = []
    for fold in range(plan.k):
        torch.manual_seed(seed * 100 + fold)
        model = build_model(cfg.model, num_classes=data.num_classes, in_chans=c, img_size=h).eval()
        meta = {
            "train": cfg.model_dump(mode="json"),
            "num_classes": data.num_classes,
            "in_chans": c,
            "img_size": h,
            "class_names": list(data.class_names),
            "fold": fold,
            "k": plan.k,
            "ema": False,
            "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": plan.data_fingerprint,
        }
        save_weights(model, trial.weights(fold), meta)
        val = plan.val_index(fold)
        oof[val] = predict_proba(model, data.images[val], transform, tta=["hflip"])[0]
        probs.append(predict_proba(model, data.images[hold], transform, tta=["hflip"])[0])
    _write_predictions(trial, data, plan, oof, probs, ["hflip"])


def _write_predictions(trial, data: FERData, plan: FoldPlan, oof: np.ndarray, probs: list, tta: list) -> None:
    """A trial's OOF (each row from the fold that held it out) and holdout (one block per fold) files."""
    meta = {"class_names": list(data.class_names), "k": plan.k, "data_fingerprint": plan.data_fingerprint, "tta": tta}
    cv, hold = plan.cv_index, plan.holdout_index
    write_predictions(
        Predictions(cv, data.ids[cv], plan.fold[cv], data.labels[cv], oof[cv], None, {**meta, "kind": "oof"}), trial.oof
    )
    rows = np.tile(hold, plan.k)
    write_predictions(
        Predictions(
            rows,
            data.ids[rows],
            np.repeat(np.arange(plan.k), len(hold)),
            data.labels[rows],
            np.concatenate(probs),
            None,
            {**meta, "kind": "holdout"},
        ),
        trial.holdout,
    )


def _train_trial(layout: RunLayout, spec, data: FERData, plan: FoldPlan, trial_id: str, lr: float, epochs: int) -> None:
    """One finished trial trained as a sweep trains it: k FoldTrainers, their weights and predictions."""
    from ferray.training._fold import FoldTrainer
    from ferray.training.weights import save_weights

    cfg = spec.base_config().model_copy(deep=True)
    cfg.model.backbone = "test_resnet"
    cfg.optim.lr = lr
    cfg.run.epochs = epochs
    trial = layout.trial(trial_id)
    trial.root.mkdir(parents=True)
    trial.config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    h, _, c = data.image_shape
    hold = plan.holdout_index
    tta = list(cfg.augment.tta)
    oof = np.zeros((len(data), data.num_classes), np.float32)
    probs = []
    for fold in range(plan.k):
        trainer = FoldTrainer(cfg, data, plan.train_index(fold), plan.val_index(fold), fold=fold, device="cpu")
        for epoch in range(epochs):
            trainer.train_epoch(epoch)
        meta = {
            "train": cfg.model_dump(mode="json"),
            "num_classes": data.num_classes,
            "in_chans": c,
            "img_size": h,
            "class_names": list(data.class_names),
            "fold": fold,
            "k": plan.k,
            "ema": cfg.optim.ema_decay is not None,
            "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": plan.data_fingerprint,
        }
        save_weights(trainer.eval_model, trial.weights(fold), meta)
        val = plan.val_index(fold)
        oof[val] = trainer.predict(val, tta)[0]
        probs.append(trainer.predict(hold, tta)[0])
    _write_predictions(trial, data, plan, oof, probs, tta)


def _write_results(layout: RunLayout) -> None:
    from ferray.run.results import ResultsTable

    table = ResultsTable()
    for i, trial_id in enumerate(TRIALS):
        table.add_result(
            trial_id, {"model.backbone": "test_resnet"}, {"epoch": 1, "metric": 0.3 - 0.1 * i, "final": True}, number=i
        )
        table.set_state(trial_id, "COMPLETED")
    table.write(layout.results)


def write_ensemble(layout: RunLayout, data: FERData, plan: FoldPlan, teacher: np.ndarray) -> None:
    files = EnsembleLayout(layout.ensemble)
    meta = {
        "class_names": list(data.class_names),
        "k": plan.k,
        "data_fingerprint": plan.data_fingerprint,
        "tta": ["hflip"],
    }
    cv, hold = plan.cv_index, plan.holdout_index
    write_predictions(
        Predictions(cv, data.ids[cv], plan.fold[cv], data.labels[cv], teacher[cv], None, {**meta, "kind": "oof"}),
        files.oof,
    )
    write_predictions(
        Predictions(
            hold,
            data.ids[hold],
            np.full(len(hold), -1),
            data.labels[hold],
            teacher[hold],
            None,
            {**meta, "kind": "holdout"},
        ),
        files.holdout,
    )
    # ensemble.json as ``ferray ensemble`` writes it (the keys distillation reads).
    files.summary.write_text(
        json.dumps(
            {
                "members": [{"trial_id": t, "rank": i + 1} for i, t in enumerate(TRIALS)],
                "methods": {
                    "greedy": {"method": "greedy", "weights": [1.0, 0.0]},
                    "mean": {"method": "mean", "weights": [0.5, 0.5]},
                },
                "chosen": "greedy",
            }
        )
    )


def build_tiny_run(root: Path, *, ensemble: bool = True) -> TinyRun:
    from ferray.search import load_search_spec
    from ferray.training._kfold import load_data, make_fold_plan

    layout = RunLayout(root)
    root.mkdir(parents=True)
    layout.spec.write_text(spec_text())
    spec = load_search_spec(layout.spec, check_backbones=False)
    base = spec.base_config()
    data = load_data(base)
    plan = make_fold_plan(base, data)
    plan.save(layout.folds)
    layout.manifest.write_text(json.dumps({"name": "tiny", "data_fingerprint": plan.data_fingerprint}))
    for i, trial_id in enumerate(TRIALS):
        _write_trial(layout, spec, data, plan, trial_id, seed=i)
    _write_results(layout)
    teacher = smoothed_teacher(data.labels, data.num_classes)
    if ensemble:
        write_ensemble(layout, data, plan, teacher)
    return TinyRun(layout, data, plan, teacher)


def build_trained_run(
    root: Path,
    *,
    source: str,
    epochs: int,
    lrs: tuple[float, ...] = (3e-3, 1e-2),
    methods: str = "mean",
    batch_size: int = 32,
) -> TinyRun:
    """A run of ``len(lrs)`` trained ``test_resnet`` trials and their ensemble (``ferray ensemble``'s code).

    ``teacher`` of the returned run is the ensemble's probabilities (OOF rows and holdout rows).
    """
    from ferray.ensemble import build_ensembles
    from ferray.run.predictions import read_predictions
    from ferray.run.results import ResultsTable
    from ferray.search import load_search_spec
    from ferray.training._kfold import load_data, make_fold_plan

    layout = RunLayout(root)
    root.mkdir(parents=True)
    layout.spec.write_text(spec_text(source, max_epochs=epochs, batch_size=batch_size))
    spec = load_search_spec(layout.spec, check_backbones=False)
    base = spec.base_config()
    data = load_data(base)
    plan = make_fold_plan(base, data)
    plan.save(layout.folds)
    layout.manifest.write_text(json.dumps({"name": "trained", "data_fingerprint": plan.data_fingerprint}))
    table = ResultsTable()
    for i, lr in enumerate(lrs):
        trial_id = f"t{i + 1:04d}"
        _train_trial(layout, spec, data, plan, trial_id, lr, epochs)
        oof = read_predictions(layout.trial(trial_id).oof)
        metric = float(np.mean(oof.probs.argmax(1) == oof.labels))
        table.add_result(
            trial_id,
            {"model.backbone": "test_resnet", "optim.lr": lr},
            {"epoch": epochs, "metric": metric, "final": True},
            number=i,
        )
        table.set_state(trial_id, "COMPLETED")
    table.write(layout.results)
    build_ensembles(root, top=len(lrs), methods=methods, echo=None)
    files = EnsembleLayout(layout.ensemble)
    teacher = np.zeros((len(data), data.num_classes), np.float32)
    for path in (files.oof, files.holdout):
        pred = read_predictions(path)
        teacher[pred.rows] = pred.probs
    return TinyRun(layout, data, plan, teacher)


@pytest.fixture(scope="session")
def tiny_run_template(tmp_path_factory) -> TinyRun:
    return build_tiny_run(tmp_path_factory.mktemp("distill") / "run")


@pytest.fixture
def tiny_run(tiny_run_template: TinyRun, tmp_path: Path) -> TinyRun:
    """A fresh copy of the tiny run (tests may break its files)."""
    import shutil

    root = tmp_path / "run"
    shutil.copytree(tiny_run_template.root, root)
    t = tiny_run_template
    return TinyRun(RunLayout(root), t.data, t.plan, t.teacher)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TinyRun:
    """2 trained ``test_resnet`` trials (2 folds, :data:`TRAINED_EPOCHS` epochs) and their mean ensemble."""
    return build_trained_run(tmp_path_factory.mktemp("trained") / "run", source=TRAINED_SOURCE, epochs=TRAINED_EPOCHS)
