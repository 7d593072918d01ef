"""A finished sweep's run folder built from real parts, once per session (no Ray, no trainer).

* the packaged quickstart spec, its data source shrunk to 140 synthetic faces;
* three trials with real tiny FERModels (``test_resnet``, multitask head, 48x48 grey, random
  weights) saved with :func:`ferray.training.weights.save_weights`, and ``oof.parquet`` /
  ``holdout.parquet`` (:mod:`ferray.run.predictions`) holding seeded probabilities of known
  quality on the real fold plan of the data, AU probabilities from the data's AU labels;
* a pruned trial and an errored one, ``results.parquet`` (:class:`ferray.run.ResultsTable`)
  and a real Optuna study in ``optuna.db``;
* ``ensemble/`` from the real :func:`ferray.ensemble.build_ensembles`, a distilled student's
  ``distill/`` folder, and (``report_bundle``, on first use) ``bundle/`` from the real
  :func:`ferray.export.export_run`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from _fer_helpers import one_torch_thread  # noqa: F401 - autouse: one torch thread for these tests

DATA = "synthetic:basic7?count=140&size=48&seed=0&difficulty=0.2"
TRIALS = {  # trial id -> (state, lr, loss, quality of its probabilities, epochs)
    "t_00000": ("COMPLETED", 0.004, "ce", 1.4, 3),
    "t_00001": ("COMPLETED", 0.002, "focal", 1.2, 3),
    "t_00002": ("COMPLETED", 0.008, "ce", 1.0, 3),
    "t_00003": ("PRUNED", 0.001, "focal", 0.5, 1),
}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _probs(labels: np.ndarray, n_classes: int, quality: float, rng: np.random.Generator) -> np.ndarray:
    """Over-confident probabilities: the true class gets ``quality`` extra logit, everything x3."""
    z = rng.normal(0.0, 1.0, (len(labels), n_classes))
    z[np.arange(len(labels)), labels] += quality
    return _softmax(3.0 * z).astype(np.float32)


def _au_probs(aus: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(0.5 * aus + rng.uniform(0, 0.6, aus.shape), 0, 1).astype(np.float32)


def _trial_config(spec: dict) -> dict:
    from ferray.training.config import TrainConfig

    base = {k: spec[k] for k in ("data", "folds", "model", "loss", "augment", "optim", "run") if k in spec}
    base["model"] = {**base["model"], "backbone": "test_resnet", "head": "multitask"}
    return TrainConfig.model_validate(base).model_dump(mode="json")


def _save_models(folder: Path, cfg: dict, k: int, classes: list[str], fingerprint: str, seed: int) -> None:
    import torch

    from ferray.run.layout import TrialLayout
    from ferray.training.config import TrainConfig
    from ferray.training.models import build_model
    from ferray.training.weights import save_weights

    tc = TrainConfig.model_validate(cfg)
    for fold in range(k):
        torch.manual_seed(seed * 10 + fold)
        model = build_model(tc.model, num_classes=len(classes), in_chans=1, img_size=48)
        meta = {
            "train": cfg,
            "num_classes": len(classes),
            "in_chans": 1,
            "img_size": 48,
            "class_names": classes,
            "fold": fold,
            "k": k,
            "ema": False,
            "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": fingerprint,
        }
        save_weights(model, TrialLayout(folder).weights(fold), meta)


def build_run(root: Path) -> dict:
    import optuna

    from ferray.data import load_source, plan_folds
    from ferray.ensemble import build_ensembles
    from ferray.run.layout import RunLayout
    from ferray.run.predictions import Predictions, write_predictions
    from ferray.run.results import ResultsTable
    from ferray.search import packaged_spec

    run = RunLayout(root / "quickstart-20261130-120000")
    run.root.mkdir(parents=True)
    spec = yaml.safe_load(Path(packaged_spec("quickstart")).read_text())
    spec["data"]["source"] = DATA
    run.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    run.manifest.write_text(json.dumps({"format": 1, "spec": spec, "trials": 6, "experiment": "test"}))
    data = load_source(DATA, size=48, channels=1)
    plan = plan_folds(data, 2, seed=0, holdout=0.15)
    fold = np.asarray(plan.fold)
    fingerprint = data.fingerprint()
    classes = list(data.class_names)
    meta = {"class_names": classes, "k": 2, "data_fingerprint": fingerprint, "tta": ["hflip"]}
    cv = np.flatnonzero(fold >= 0)
    hold = np.flatnonzero(fold < 0)

    results = ResultsTable()
    t0 = 1_700_000_000.0
    cfg = _trial_config(spec)
    for number, (tid, (state, lr, loss, quality, epochs)) in enumerate(TRIALS.items()):
        rng = np.random.default_rng(number)
        trial = run.trial(tid)
        trial.root.mkdir()
        tcfg = {**cfg, "optim": {**cfg["optim"], "lr": lr}, "loss": {**cfg["loss"], "name": loss}}
        trial.config.write_text(yaml.safe_dump(tcfg, sort_keys=False))
        params = {"optim.lr": lr, "model.backbone": "resnet10t", "loss.name": loss}
        for epoch in range(1, epochs + 1):
            acc = 0.2 + 0.3 * quality * epoch / 3
            results.add_result(
                tid,
                params,
                {
                    "epoch": epoch,
                    "metric": acc,
                    "val_accuracy_mean": acc,
                    "val_accuracy_std": 0.01 * (number + 1),
                    "epoch_seconds": 2.0,
                    "timestamp": t0 + 10 * epoch + number,
                },
                number=number,
            )
        results.set_state(tid, state)
        if state != "COMPLETED":
            continue
        _save_models(trial.root, tcfg, 2, classes, fingerprint, seed=number)
        oof = _probs(data.labels[cv], len(classes), quality, rng)
        trial.metrics.write_text(
            json.dumps({"class_names": classes, "oof": {"accuracy": float(np.mean(oof.argmax(1) == data.labels[cv]))}})
        )
        write_predictions(
            Predictions(
                cv, data.ids[cv], fold[cv], data.labels[cv], oof, _au_probs(data.aus[cv], rng), {**meta, "kind": "oof"}
            ),
            trial.oof,
        )
        h_rows = np.tile(hold, 2)
        h_probs = _probs(data.labels[h_rows], len(classes), quality, rng)
        write_predictions(
            Predictions(
                h_rows,
                data.ids[h_rows],
                np.repeat([0, 1], len(hold)),
                data.labels[h_rows],
                h_probs,
                _au_probs(data.aus[h_rows], rng),
                {**meta, "kind": "holdout"},
            ),
            trial.holdout,
        )
    results.set_state("t_00004", "ERROR", error="fold 0: loss is NaN at epoch 1")
    results.write(run.results)

    storage = f"sqlite:///{run.study}"
    study = optuna.create_study(study_name=spec["name"], storage=storage, direction="maximize")
    dist = {
        "optim.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
        "model.backbone": optuna.distributions.CategoricalDistribution(["resnet10t", "mobilenetv3_small_050"]),
        "loss.name": optuna.distributions.CategoricalDistribution(["ce", "focal"]),
    }
    extra = [(0.003, "ce", 0.41), (0.006, "focal", 0.38), (0.0015, "ce", 0.33)]  # more completed trials
    for state, lr, loss, quality, epochs in TRIALS.values():
        values = {e: 0.2 + 0.3 * quality * e / 3 for e in range(1, epochs + 1)}
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if state == "COMPLETED" else optuna.trial.TrialState.PRUNED,
                value=values[epochs] if state == "COMPLETED" else None,
                intermediate_values=values,
                params={"optim.lr": lr, "model.backbone": "resnet10t", "loss.name": loss},
                distributions=dist,
            )
        )
    for lr, loss, value in extra:
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                value=value,
                params={"optim.lr": lr, "model.backbone": "mobilenetv3_small_050", "loss.name": loss},
                distributions=dist,
            )
        )

    build_ensembles(run.root, top=3, methods=["greedy", "stacking", "mean"], seed=0, echo=None)

    distill = run.distill_files
    student_cfg = {**cfg, "model": {**cfg["model"], "head": "emotion"}}
    _save_models(distill.root, student_cfg, 1, classes, fingerprint, seed=9)
    distill.config.write_text(yaml.safe_dump(student_cfg, sort_keys=False))
    rng = np.random.default_rng(9)
    write_predictions(
        Predictions(
            hold,
            data.ids[hold],
            np.zeros(len(hold)),
            data.labels[hold],
            _probs(data.labels[hold], len(classes), 2.0, rng),
            None,
            {**meta, "kind": "holdout", "model": "student"},
        ),
        distill.holdout,
    )
    distill.summary.write_text(
        json.dumps(
            {
                "student": {"accuracy": 0.5, "params": 12345, "latency_ms_per_image": {"batch_1": 1.0}},
                "training": {"student": "test_resnet", "epochs": 2},
            }
        )
    )
    return {"run": run.root, "data": data, "fold": fold, "classes": classes}


@pytest.fixture(scope="session")
def report_run(tmp_path_factory) -> dict:
    """The run folder (read-only: tests that write a report copy it or write under ``tmp_path``)."""
    return build_run(tmp_path_factory.mktemp("report_run"))


@pytest.fixture
def run_copy(report_run, tmp_path) -> Path:
    dst = tmp_path / report_run["run"].name
    shutil.copytree(report_run["run"], dst)
    return dst


@pytest.fixture(scope="session")
def report_bundle(report_run) -> Path:
    """``RUN/bundle`` exported from the session run (ONNX export: seconds, so only when asked for)."""
    from ferray.export import export_run

    run = report_run["run"]
    if not (run / "bundle" / "manifest.json").is_file():
        export_run(run)
    return run / "bundle"


@pytest.fixture(scope="session")
def run_report(report_run, tmp_path_factory) -> dict:
    """The session run's report, written once: ``{"page", "doc" (report.json), **report_run}``."""
    from ferray.report import build_report

    out = tmp_path_factory.mktemp("run_report")
    page = build_report(report_run["run"], out=out)
    assert page == out / "index.html"
    return {"page": page, "doc": json.loads((out / "report.json").read_text()), **report_run}
