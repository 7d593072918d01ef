"""``ferray status`` shows the best trial's accuracy with its 95% bootstrap interval.

The run folder is data written the way a sweep writes it: ``results.parquet`` through
:class:`ferray.run.ResultsTable`, prediction files through
:func:`ferray.run.predictions.write_predictions`, and ``metrics.json`` with the intervals
the training worker computes (:func:`ferray.metrics.bootstrap_metrics`, seed 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ferray.metrics import bootstrap_metrics
from ferray.run.layout import RunLayout
from ferray.run.predictions import Predictions, write_predictions
from ferray.run.results import ResultsTable
from ferray.run.status import get_status, render_status

CLASSES = ["angry", "happy", "neutral"]
K = 2


def _probs(labels: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    z = rng.normal(0.0, 1.0, (len(labels), len(CLASSES)))
    z[np.arange(len(labels)), labels] += strength
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ci(labels: np.ndarray, probs: np.ndarray, seed: int = 0) -> dict:
    return {m: ci._asdict() for m, ci in bootstrap_metrics(labels, probs, num_classes=len(CLASSES), seed=seed).items()}


def write_run(root: Path, metrics: dict[str, str]) -> dict:
    """Trials ``a`` (best), ``b`` and ``c`` (running, no files); ``metrics[tid]`` says what metrics.json holds:
    ``"holdout"`` (what the worker writes), ``"all"`` (also OOF and clean-holdout intervals) or ``"none"``."""
    run = RunLayout(root)
    root.mkdir()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CLASSES), 300)
    cv, hold = np.arange(240), np.arange(240, 300)
    table = ResultsTable()
    truth: dict = {}
    for number, (tid, fold_mean) in enumerate((("a", 0.8), ("b", 0.6), ("c", 0.4))):
        params = {"optim.lr": 0.01 * (number + 1)}
        table.add_result(tid, params, {"epoch": 1, "metric": fold_mean, "val_accuracy_std": 0.02}, number=number)
        table.set_state(tid, "RUNNING" if tid == "c" else "COMPLETED")
        if tid == "c":
            continue
        trial = run.trial(tid)
        trial.root.mkdir()
        meta = {"class_names": CLASSES, "k": K, "data_fingerprint": "fp"}
        oof = _probs(labels[cv], rng, 1.5 - 0.5 * number)
        write_predictions(
            Predictions(cv, cv.astype(str), cv % K, labels[cv], oof, None, {**meta, "kind": "oof"}), trial.oof
        )
        per_fold = [_probs(labels[hold], rng, 1.5 - 0.5 * number) for _ in range(K)]
        h_rows = np.tile(hold, K)
        write_predictions(
            Predictions(
                h_rows,
                h_rows.astype(str),
                np.repeat(np.arange(K), len(hold)),
                labels[h_rows],
                np.concatenate(per_fold),
                None,
                {**meta, "kind": "holdout"},
            ),
            trial.holdout,
        )
        mean = np.mean(per_fold, axis=0)
        truth[tid] = {"oof": _ci(labels[cv], oof), "holdout": _ci(labels[hold], mean)}
        doc: dict = {"class_names": CLASSES}
        if metrics[tid] in ("holdout", "all"):
            doc["holdout_ci"] = truth[tid]["holdout"]
        if metrics[tid] == "all":
            # Other seeds than status would use: the file's intervals are shown as they are.
            doc["oof_ci"] = truth[tid]["oof_file"] = _ci(labels[cv], oof, seed=7)
            doc["holdout_clean_ci"] = truth[tid]["holdout_clean"] = _ci(labels[hold][:50], mean[:50], seed=7)
        trial.metrics.write_text(json.dumps(doc))
    table.write(run.results)
    return truth


def _text(status: dict) -> str:
    from rich.console import Console

    console = Console(width=240, record=True)
    console.print(render_status(status))
    return console.export_text()


def _cell(ci: dict) -> str:
    return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def test_best_trial_shows_holdout_intervals_from_metrics_json_and_computes_the_oof_one(tmp_path):
    truth = write_run(tmp_path / "run", {"a": "holdout", "b": "holdout"})
    status = get_status(tmp_path / "run")
    best, b, c = status["trials"]
    assert status["best"] is best and best["trial_id"] == "a"
    assert best["intervals"]["holdout"] == {**truth["a"]["holdout"], "source": "metrics.json"}
    # metrics.json has no OOF interval: the best trial's is computed from its oof.parquet.
    assert best["intervals"]["oof"] == {**truth["a"]["oof"], "source": "oof.parquet"}
    assert list(best["intervals"]) == ["oof", "holdout"]
    assert b["intervals"] == {"holdout": {**truth["b"]["holdout"], "source": "metrics.json"}}  # only the best computes
    assert c["intervals"] == {}  # running: no files yet
    for ci in (best["intervals"]["oof"]["accuracy"], best["intervals"]["holdout"]["macro_f1"]):
        assert ci["low"] <= ci["value"] <= ci["high"] and ci["low"] < ci["high"]

    text = _text(status)
    assert "OOF acc [95% CI]" in text and "holdout acc [95% CI]" in text
    assert _cell(truth["a"]["oof"]["accuracy"]) in text and _cell(truth["b"]["holdout"]["accuracy"]) in text
    assert (
        f"  OOF: accuracy {_cell(truth['a']['oof']['accuracy'])}, macro-F1 "
        f"{_cell(truth['a']['oof']['macro_f1'])} (95% bootstrap interval, oof.parquet)"
    ) in text
    assert f"  holdout: accuracy {_cell(truth['a']['holdout']['accuracy'])}" in text


def test_intervals_in_metrics_json_win_and_the_holdout_is_the_mean_of_fold_models(tmp_path):
    truth = write_run(tmp_path / "run", {"a": "all", "b": "none"})
    best = get_status(tmp_path / "run")["best"]
    assert best["intervals"]["oof"] == {**truth["a"]["oof_file"], "source": "metrics.json"}
    assert best["intervals"]["holdout_clean"] == {**truth["a"]["holdout_clean"], "source": "metrics.json"}
    assert f"  holdout without training duplicates: accuracy {_cell(truth['a']['holdout_clean']['accuracy'])}" in _text(
        get_status(tmp_path / "run")
    )

    # A metrics.json without intervals: the best trial's are computed from its files.
    truth = write_run(tmp_path / "run2", {"a": "none", "b": "none"})
    best = get_status(tmp_path / "run2")["best"]
    assert best["intervals"] == {
        "oof": {**truth["a"]["oof"], "source": "oof.parquet"},
        "holdout": {**truth["a"]["holdout"], "source": "holdout.parquet"},
    }


def test_status_json_carries_the_intervals(tmp_path, capsys):
    from ferray.search._cli import add_commands

    truth = write_run(tmp_path / "run", {"a": "holdout", "b": "holdout"})
    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["status", str(tmp_path / "run"), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"]["intervals"]["holdout"]["accuracy"] == pytest.approx(truth["a"]["holdout"]["accuracy"])
    assert out["trials"][0]["intervals"]["oof"]["macro_f1"] == pytest.approx(truth["a"]["oof"]["macro_f1"])


def _objective_run(root: Path, objectives: str) -> Path:
    """Trials with fold means and costs as a multi-objective sweep writes them."""
    root.mkdir()
    (root / "spec.yaml").write_text(f"name: mo\nsearch:\n  objectives: {objectives}\n")
    table = ResultsTable()
    trials = {  # id: state, [(epoch, accuracy)], latency_ms, params
        "fast": ("COMPLETED", [(1, 0.5), (2, 0.6)], 1.0, 1000),
        "accurate": ("COMPLETED", [(1, 0.7), (2, 0.9)], 9.0, 9000),
        "dominated": ("COMPLETED", [(1, 0.5), (2, 0.55)], 5.0, 5000),
        "pruned_cheap": ("PRUNED", [(1, 0.3)], 0.5, 500),
        "errored": ("ERROR", [(1, 0.99)], 0.1, 100),
        "running": ("RUNNING", [(1, 0.95)], 0.2, 200),
    }
    for tid, (state, epochs, ms, params) in trials.items():
        for epoch, acc in epochs:
            table.add_result(
                tid,
                {"optim.lr": 0.01},
                {"epoch": epoch, "metric": acc, "val_accuracy_mean": acc, "latency_ms": ms, "params": params},
            )
        table.set_state(tid, state)
    table.write(RunLayout(root).results)
    return root


def test_status_marks_the_pareto_front_of_ended_trials(tmp_path):
    run = _objective_run(tmp_path / "run", "[{metric: accuracy}, {metric: latency_ms}]")
    status = get_status(run, intervals=False)
    assert status["objectives"] == [
        {"metric": "accuracy", "direction": "max"},
        {"metric": "latency_ms", "direction": "min"},
    ]
    # errored and running trials never compete; the pruned one is on the front by its cost.
    assert sorted(status["pareto"]) == ["accurate", "fast", "pruned_cheap"]
    by_id = {t["trial_id"]: t for t in status["trials"]}
    assert by_id["accurate"]["objectives"] == {"accuracy": 0.9, "latency_ms": 9.0}
    assert by_id["dominated"]["pareto"] is False and by_id["errored"]["pareto"] is False
    assert status["best"]["trial_id"] == "accurate"

    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_status(status))
    text = console.export_text()
    assert "pareto" in text and "latency_ms" in text
    assert "Pareto front over accuracy (max), latency_ms (min): 3 trial(s) marked *" in text


def test_status_front_follows_the_objectives_chosen(tmp_path):
    run = _objective_run(tmp_path / "run", "[{metric: accuracy}, {metric: params}]")
    assert sorted(get_status(run, intervals=False)["pareto"]) == ["accurate", "fast", "pruned_cheap"]
    one = tmp_path / "one"
    one.mkdir()
    (one / "spec.yaml").write_text("name: one\n")
    assert "pareto" not in get_status(one, intervals=False)


def test_status_names_bad_objectives_in_the_run_spec(tmp_path):
    from ferray.errors import ConfigError

    run = _objective_run(tmp_path / "run", "[{metric: accuracy}, {metric: speed}]")
    with pytest.raises(
        ConfigError, match=r"spec.yaml: search.objectives.1.metric: metric is 'speed', but must be one of"
    ):
        get_status(run, intervals=False)
