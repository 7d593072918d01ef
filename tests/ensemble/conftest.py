"""Fixtures for the ensemble tests: seeded member probabilities and synthetic run folders.

A synthetic run folder is data, not a fake trainer: real ``oof.parquet``/``holdout.parquet``
files written with :func:`ferray.run.predictions.write_predictions`, a ``results.parquet``
written with :class:`ferray.run.ResultsTable` and the packaged quickstart spec.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from ferray.run.layout import RunLayout
from ferray.run.predictions import Predictions, write_predictions
from ferray.run.results import ResultsTable
from ferray.search import packaged_spec

CLASSES = ["angry", "happy", "neutral", "sad"]


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def balanced_labels(n: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """``n`` labels, every class (almost) equally often, in a seeded order."""
    return np.random.default_rng(seed).permutation(np.arange(n) % n_classes)


def member_proba(
    y: np.ndarray, n_classes: int, *, seed: int, strength: float = 2.0, expert: tuple[int, ...] | None = None
) -> np.ndarray:
    """A member's probabilities: noisy logits with the true class raised by ``strength``.

    An ``expert`` member is sure (strength x 2.5) on rows of its classes and hardly better
    than chance on the others: experts on different classes complement each other.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (len(y), n_classes))
    boost = np.full(len(y), strength)
    if expert is not None:
        mine = np.isin(y, expert)
        boost = np.where(mine, 2.5 * strength, 0.2 * strength)
    logits[np.arange(len(y)), y] += boost
    return softmax(logits)


def complementary(n_rows: int = 400, n_classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(P, y)``: two experts on disjoint halves of the classes and one all-rounder."""
    y = balanced_labels(n_rows, n_classes, seed)
    half = tuple(range(n_classes // 2))
    rest = tuple(range(n_classes // 2, n_classes))
    P = np.stack(
        [
            member_proba(y, n_classes, seed=seed + 1, expert=half),
            member_proba(y, n_classes, seed=seed + 2, expert=rest),
            member_proba(y, n_classes, seed=seed + 3, strength=1.0),
        ]
    )
    return P, y


@pytest.fixture
def members_data():
    return complementary()


@dataclass
class TrialSpec:
    """One trial of a synthetic run."""

    trial_id: str
    state: str = "COMPLETED"
    metric: float | None = 0.5  # best epoch's fold mean
    strength: float = 1.5
    expert: tuple[int, ...] | None = None
    files: tuple[str, ...] = ("oof", "holdout")
    fingerprint: str | None = None  # overrides the run's data fingerprint
    fold_shift: int = 0  # != 0: a different fold plan
    drop_rows: int = 0  # OOF rows left out of this trial's file
    params: dict = field(default_factory=dict)
    latency_ms: float | None = None  # the trained model's batch-1 latency, in its last row


@dataclass
class SyntheticRun:
    root: Path
    trials: list[TrialSpec]
    labels: np.ndarray  # every row's label
    cv_rows: np.ndarray
    holdout_rows: np.ndarray
    folds: np.ndarray  # fold of each cv row (same order as cv_rows)
    k: int

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)


def write_run(
    root: Path,
    trials: list[TrialSpec],
    *,
    n_rows: int = 240,
    n_holdout: int = 60,
    k: int = 3,
    seed: int = 0,
    spec_text: str | None = None,
    n_aus: int = 0,
) -> SyntheticRun:
    """A run folder as a finished sweep leaves it (see the module docstring).

    ``n_aus`` > 0 gives every prediction file AU probabilities (a multi-task run).
    """
    root.mkdir(parents=True, exist_ok=True)
    run = RunLayout(root)
    if spec_text is None:
        shutil.copy(packaged_spec("quickstart"), run.spec)
    else:
        run.spec.write_text(spec_text)
    n_classes = len(CLASSES)
    total = n_rows + n_holdout
    labels = balanced_labels(total, n_classes, seed)
    perm = np.random.default_rng(seed + 100).permutation(total)
    holdout_rows = np.sort(perm[:n_holdout])
    cv_rows = np.sort(perm[n_holdout:])
    folds = np.arange(len(cv_rows)) % k
    ids = np.array([f"img_{i:04d}" for i in range(total)], dtype=object)

    table = ResultsTable()
    for number, t in enumerate(trials):
        params = t.params or {"optim.lr": 0.001 * (number + 1), "model.backbone": "resnet10t"}
        table.add_trial(t.trial_id, params, number=number)
        if t.metric is not None:
            for epoch, frac in ((1, 0.8), (2, 1.0)):
                table.add_result(
                    t.trial_id,
                    params,
                    {
                        "epoch": epoch,
                        "metric": t.metric * frac,
                        "val_accuracy_mean": t.metric * frac,
                        "val_accuracy_std": 0.01,
                        **({"latency_ms": t.latency_ms} if epoch == 2 and t.latency_ms is not None else {}),
                    },
                )
        table.set_state(t.trial_id, t.state, error="TrainingFailed: boom" if t.state == "ERROR" else None)
        trial_dir = run.trial(t.trial_id)
        trial_dir.root.mkdir(parents=True, exist_ok=True)
        meta = {"class_names": CLASSES, "k": k, "data_fingerprint": t.fingerprint or "fp-run", "tta": ["hflip"]}
        tseed = seed + 1000 * (number + 1)
        if "oof" in t.files:
            rows = cv_rows[t.drop_rows :]
            f = (folds[t.drop_rows :] + t.fold_shift) % k
            probs = member_proba(labels[rows], n_classes, seed=tseed, strength=t.strength, expert=t.expert)
            au = _au(rows, n_aus, tseed)
            order = np.random.default_rng(tseed).permutation(len(rows))  # files need not be sorted
            write_predictions(
                Predictions(
                    rows[order],
                    ids[rows[order]],
                    f[order],
                    labels[rows[order]],
                    probs[order],
                    None if au is None else au[order],
                    {**meta, "kind": "oof"},
                ),
                trial_dir.oof,
            )
        if "holdout" in t.files:
            hrows = np.tile(holdout_rows, k)
            hfolds = np.repeat(np.arange(k), n_holdout)
            probs = np.concatenate(
                [
                    member_proba(
                        labels[holdout_rows], n_classes, seed=tseed + 1 + j, strength=t.strength, expert=t.expert
                    )
                    for j in range(k)
                ]
            )
            write_predictions(
                Predictions(
                    hrows,
                    ids[hrows],
                    hfolds,
                    labels[hrows],
                    probs,
                    _au(hrows, n_aus, tseed + 7),
                    {**meta, "kind": "holdout"},
                ),
                trial_dir.holdout,
            )
    table.write(run.results)
    return SyntheticRun(root, trials, labels, cv_rows, holdout_rows, folds, k)


def _au(rows: np.ndarray, n_aus: int, seed: int) -> np.ndarray | None:
    if not n_aus:
        return None
    return np.random.default_rng(seed).uniform(size=(len(rows), n_aus))


def standard_trials() -> list[TrialSpec]:
    """Four completed trials (two complementary experts among them), one pruned, one errored."""
    return [
        TrialSpec("t_a", metric=0.71, expert=(0, 1), strength=1.0),
        TrialSpec("t_b", metric=0.69, expert=(2, 3), strength=1.0),
        TrialSpec("t_c", metric=0.66, strength=1.0),
        TrialSpec("t_d", metric=0.60, strength=0.5),
        TrialSpec("t_p", state="PRUNED", metric=0.75, strength=1.0),
        TrialSpec("t_e", state="ERROR", metric=None, files=()),
    ]


@pytest.fixture
def make_run(tmp_path):
    """``make_run(trials=None, **kw)`` writes a synthetic run under ``tmp_path``; returns a SyntheticRun."""
    count = iter(range(1000))

    def make(trials: list[TrialSpec] | None = None, **kw) -> SyntheticRun:
        return write_run(tmp_path / f"run{next(count)}", standard_trials() if trials is None else trials, **kw)

    return make
