"""A trial's start-up: kept in results.parquet, shown by ``ferray status``, weighed by the planner."""

from __future__ import annotations

import pytest
from rich.console import Console

from ferray.run.results import RESULT_KEYS, ResultsTable, read_results
from ferray.run.status import get_status, render_status
from ferray.runtime.planner import estimate_startup
from ferray.search import SearchSpec, plan_search_resources
from ferray.training._worker import STARTUP_KEYS


def _first_epoch(metric: float, startup: float, heavy: list[str]) -> dict:
    return {
        "epoch": 1,
        "metric": metric,
        "val_accuracy_mean": metric,
        "val_accuracy_std": 0.0,
        "epoch_seconds": 2.0,
        "startup_s": startup,
        "import_s": 3.0,
        "worker_start_s": 9.0,
        "startup_cpu_s": 11.0,
        "heavy_modules": heavy,
    }


def test_results_keep_every_startup_key_the_workers_report():
    assert set(STARTUP_KEYS) | {"startup_cpu_s", "heavy_modules"} <= set(RESULT_KEYS)


def test_startup_survives_results_parquet_and_status_shows_its_median(tmp_path):
    table = ResultsTable()
    table.add_result("a", {"optim.lr": 0.01}, _first_epoch(0.4, 20.0, []))
    table.add_result("a", {}, {"epoch": 2, "metric": 0.5, "epoch_seconds": 2.0})
    table.add_result("b", {"optim.lr": 0.02}, _first_epoch(0.3, 30.0, []))
    table.add_result("c", {"optim.lr": 0.03}, _first_epoch(0.2, 24.0, ["sklearn"]))
    table.write(tmp_path / "results.parquet")

    rows = read_results(tmp_path / "results.parquet")
    first = [r for r in rows if r["epoch"] == 1]
    assert [r["heavy_modules"] for r in first] == [[], [], ["sklearn"]]
    assert [r["startup_s"] for r in first] == [20.0, 30.0, 24.0]
    assert next(r for r in rows if r["epoch"] == 2)["startup_s"] is None

    status = get_status(tmp_path)
    assert {t["trial_id"]: t["startup_s"] for t in status["trials"]} == {"a": 20.0, "b": 30.0, "c": 24.0}
    console = Console(width=200, record=True)
    console.print(render_status(status))
    assert (
        "start-up (trial start to first training step): median 24.0 s, 20.0-30.0 s over 3 trial(s)"
        in console.export_text()
    )


def test_no_heavy_module_reads_back_as_an_empty_list_after_a_resume(tmp_path):
    table = ResultsTable()
    for trial in ("a", "b"):
        table.add_result(trial, {}, _first_epoch(0.4, 20.0, []))
    table.write(tmp_path / "results.parquet")
    ResultsTable.load(tmp_path / "results.parquet").write(tmp_path / "results.parquet")
    assert [r["heavy_modules"] for r in read_results(tmp_path / "results.parquet")] == [[], []]


def _spec(max_concurrent=None, **resources) -> SearchSpec:
    return SearchSpec.model_validate(
        {
            "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.01}},
            "budget": {"trials": 6, "max_epochs": 2, "max_concurrent": max_concurrent},
            "resources": resources,
        }
    )


def test_starting_a_trial_pays_when_it_costs_the_running_ones_no_more_than_it_saves():
    for cpus in (2, 4, 16):
        s = estimate_startup(k=2, cluster_cpus=cpus)
        assert s.pays and s.cost_s == pytest.approx(s.cpu_s / cpus) and s.cost_s <= s.saving_s
    one = estimate_startup(k=2, cluster_cpus=1)
    assert not one.pays and one.cost_s > one.saving_s
    assert estimate_startup(k=5, cluster_cpus=2).cpu_s > estimate_startup(k=2, cluster_cpus=2).cpu_s


def test_the_planner_runs_no_extra_trial_whose_startup_does_not_pay():
    plan = plan_search_resources(_spec(max_concurrent=2), k=2, cluster_cpus=1)
    assert plan.concurrent_trials == 1 and plan.asked_concurrent == 2
    assert "1 at once, not the 2 asked" in plan.explain()


def test_the_quickstart_shape_still_overlaps_two_trials_on_two_cpus():
    plan = plan_search_resources(_spec(max_concurrent=2), k=2, cluster_cpus=2)
    assert plan.concurrent_trials == 2 and plan.asked_concurrent is None
    assert "start-up per trial (estimate)" in plan.explain()


@pytest.mark.parametrize("resources", [{"cpus_per_worker": 0.3}, {"gpus_per_worker": 0.5}])
def test_explicit_worker_resources_are_never_second_guessed(resources):
    plan = plan_search_resources(_spec(max_concurrent=3, **resources), k=2, cluster_cpus=2, cluster_gpus=4)
    assert plan.asked_concurrent is None


def test_a_trial_reports_its_own_process_start_and_results_keep_it():
    import time

    from ferray.search._trial import _boot_report

    boot = _boot_report(time.time())
    assert set(boot) == {"trial_boot_s"} and boot["trial_boot_s"] > 0  # this process started before now
    assert "trial_boot_s" in RESULT_KEYS
