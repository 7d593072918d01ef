from __future__ import annotations

import math

import pytest

from ferray.run.results import RESULT_KEYS, ResultsTable, read_results, write_table_atomic
from ferray.run.status import get_status
from ferray.search._optuna import trial_state


def _report(epoch, metric, done=False, **extra):
    return {
        "epoch": epoch,
        "metric": metric,
        "val_accuracy_mean": metric,
        "val_accuracy_std": 0.01,
        "epoch_seconds": 2.0,
        "final": done,
        "ignored_key": 1,
        **extra,
    }


def _table():
    t = ResultsTable()
    t.add_result("a", {"optim.lr": 0.01, "loss.name": "ce"}, _report(1, 0.30), number=0)
    t.add_result("a", {"optim.lr": 0.01, "loss.name": "ce"}, _report(2, 0.45), number=0)
    t.add_result("a", {}, _report(3, 0.50, done=True, oof_accuracy=0.49))
    t.set_state("a", "COMPLETED")
    t.add_result("b", {"optim.lr": 0.1, "loss.name": "focal", "loss.focal_gamma": 2.0}, _report(1, 0.20), number=1)
    t.set_state("b", "PRUNED")
    t.add_trial("c", {"optim.lr": 5.0, "loss.name": "ce"}, number=2)
    t.set_state("c", "ERROR", error="TrainingFailed: loss became NaN at epoch 1")
    return t


def test_rows_one_per_trial_per_epoch_with_params_as_columns(tmp_path):
    path = _table().write(tmp_path / "results.parquet")
    rows = read_results(path)
    assert [(r["trial_id"], r["epoch"]) for r in rows] == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", None)]
    assert rows[0]["param.optim.lr"] == 0.01 and rows[3]["param.loss.focal_gamma"] == 2.0
    assert rows[0]["param.loss.focal_gamma"] is None  # inactive conditional parameter
    assert {r["state"] for r in rows if r["trial_id"] == "a"} == {"COMPLETED"}
    assert rows[4]["error"].startswith("TrainingFailed") and "ignored_key" not in rows[0]
    assert rows[2]["oof_accuracy"] == 0.49 and rows[0]["trial_number"] == 0


def test_repeated_epoch_replaces_row():
    t = ResultsTable()
    t.add_result("a", {}, _report(1, 0.1))
    t.add_result("a", {}, _report(1, 0.2))
    assert [r["metric"] for r in t.rows()] == [0.2]


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "results.parquet"
    write_table_atomic([{"trial_id": "a", "state": "RUNNING", "epoch": 1}], path)
    write_table_atomic(
        [
            {"trial_id": "a", "state": "COMPLETED", "epoch": 1, "x": "mixed"},
            {"trial_id": "b", "state": "RUNNING", "epoch": 1, "x": 3},
        ],
        path,
    )
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]
    assert [r["x"] for r in read_results(path)] == ["mixed", "3"]  # mixed types kept as text


def test_unknown_state_is_refused():
    with pytest.raises(ValueError, match="state 'DONE' is not one of"):
        ResultsTable().set_state("a", "DONE")


def test_get_status_best_first_and_best_config(tmp_path):
    _table().write(tmp_path / "results.parquet")
    (tmp_path / "spec.yaml").write_text("name: demo\nbudget: {trials: 3}\n")
    status = get_status(tmp_path)
    assert [t["trial_id"] for t in status["trials"]] == ["a", "b", "c"]
    assert status["counts"] == {"COMPLETED": 1, "PRUNED": 1, "ERROR": 1}
    best = status["best"]
    assert best["trial_id"] == "a" and best["metric"] == 0.5 and best["best_epoch"] == 3
    assert best["params"] == {"optim.lr": 0.01, "loss.name": "ce"}
    assert status["trials"][2]["error"].endswith("NaN at epoch 1")


def test_get_status_loss_is_minimised(tmp_path):
    t = ResultsTable()
    t.add_result("a", {}, {"epoch": 1, "metric": 1.2, "final": True})
    t.set_state("a", "COMPLETED")
    t.add_result("b", {}, {"epoch": 1, "metric": 0.9, "final": True})
    t.set_state("b", "COMPLETED")
    t.write(tmp_path / "results.parquet")
    (tmp_path / "spec.yaml").write_text("name: demo\nrun: {metric: loss}\n")
    assert get_status(tmp_path)["best"]["trial_id"] == "b"


def test_get_status_of_a_non_run_dir(tmp_path):
    from ferray.errors import ConfigError

    with pytest.raises(ConfigError, match="not a ferray run directory"):
        get_status(tmp_path)
    with pytest.raises(ConfigError, match="no such run directory"):
        get_status(tmp_path / "missing")


@pytest.mark.parametrize(
    "result, error, pruned, expected",
    [
        ({"metric": 0.5, "epoch": 3}, False, False, ("COMPLETE", 0.5)),
        ({"metric": 0.5, "epoch": 2, "stopped_early": True}, False, False, ("COMPLETE", 0.5)),  # own patience
        ({"metric": 0.3, "epoch": 1}, False, True, ("PRUNED", None)),
        ({"metric": 0.3, "epoch": 2, "done": True}, False, False, ("PRUNED", None)),  # Tune's done: time limit
        ({"metric": 0.4, "epoch": 2, "final": True}, False, False, ("COMPLETE", 0.4)),  # the worker's own end
        ({"metric": 0.3, "epoch": 1}, True, False, ("FAIL", None)),
        ({"metric": 0.3, "epoch": 3}, True, False, ("FAIL", None)),  # an error beats a last value
        (None, True, False, ("FAIL", None)),
        ({"metric": math.nan, "epoch": 3}, False, False, ("FAIL", None)),
    ],
)
def test_trial_state_for_optuna(result, error, pruned, expected):
    assert trial_state(result, error=error, pruned=pruned, metric="metric", max_epochs=3) == expected


def test_recomputed_epochs_replace_their_rows_and_ended_trials_stay_as_they_were(tmp_path):
    t = ResultsTable()
    for epoch, metric in ((1, 0.2), (2, 0.3), (1, 0.21), (2, 0.31), (3, 0.4)):  # resumed from scratch
        t.add_result("a", {"optim.lr": 0.01}, _report(epoch, metric))
    assert [(r["epoch"], r["metric"]) for r in t.rows()] == [(1, 0.21), (2, 0.31), (3, 0.4)]
    t.set_state("a", "COMPLETED")
    t.add_result("a", {}, _report(3, 0.99))  # a replayed final report
    t.set_state("a", "RUNNING")
    assert t.rows()[-1]["metric"] == 0.4 and t.state("a") == "COMPLETED"


def test_a_table_loads_back_row_for_row(tmp_path):
    path = _table().write(tmp_path / "results.parquet")
    again = ResultsTable.load(path).write(tmp_path / "again.parquet")
    assert read_results(again) == read_results(path)


def test_cost_columns_are_kept_and_read_back(tmp_path):
    from ferray.training.cost import COST_KEYS

    assert set(COST_KEYS) <= set(RESULT_KEYS)
    t = ResultsTable()
    cost = {"params": 1234, "macs": 56789, "latency_ms": 1.5, "latency_ms_b64": 40.0, "latency_threads": 2}
    t.add_result("a", {}, {"epoch": 1, "metric": 0.5, **cost, "not_a_column": 1})
    path = t.write(tmp_path / "results.parquet")
    (row,) = read_results(path)
    assert {k: row[k] for k in cost} == cost and "not_a_column" not in row
