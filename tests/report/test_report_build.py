"""``build_report`` on a run and a bundle: what report.json holds, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from ferray.errors import ConfigError, DataError
from ferray.metrics import fit_temperature
from ferray.report import build_report, param_importances
from ferray.run.predictions import read_predictions


def _holdout_mean(path: Path) -> tuple[np.ndarray, np.ndarray]:
    p = read_predictions(path)
    rows, inv = np.unique(p.rows, return_inverse=True)
    probs = np.zeros((len(rows), p.probs.shape[1]))
    np.add.at(probs, inv, p.probs)
    labels = np.zeros(len(rows), int)
    labels[inv] = p.labels
    return labels, probs / np.bincount(inv)[:, None]


def test_models_and_their_numbers(run_report):
    doc, run, classes = run_report["doc"], run_report["run"], run_report["classes"]
    assert doc["kind"] == "run" and doc["format"] == 1 and doc["notes"] == []
    assert set(doc["models"]) == {"best_trial", "ensemble", "student"}
    best = doc["models"]["best_trial"]
    assert best["trial_id"] == "t_00000" and best["evaluated_on"] == "holdout"
    y, p = _holdout_mean(run / "t_00000" / "holdout.parquet")
    prec, rec, f1, sup = precision_recall_fscore_support(y, p.argmax(1), labels=range(len(classes)), zero_division=0)
    for i, c in enumerate(classes):
        row = best["holdout"]["per_class"][c]
        got = (row["precision"], row["recall"], row["f1"], row["support"])
        assert got == pytest.approx((prec[i], rec[i], f1[i], sup[i]))
    assert best["holdout"]["weighted_f1"] == pytest.approx(
        f1_score(y, p.argmax(1), average="weighted", labels=range(len(classes)), zero_division=0)
    )
    assert np.asarray(best["confusion"]["counts"]).sum() == len(y)
    assert best["most_confused"] and all(m["true"] != m["predicted"] for m in best["most_confused"])
    oof = read_predictions(run / "t_00000" / "oof.parquet")
    assert best["oof"]["rows"] == len(oof)
    assert [f["fold"] for f in best["fold_spread"]["folds"]] == [0, 1]
    cal = best["calibration"]
    assert cal["temperature"] == pytest.approx(fit_temperature(oof.labels, oof.probs), rel=1e-4)
    assert cal["fitted_on"] == "oof" and cal["evaluated_on"] == "holdout" and cal["fit_rows"] == len(oof)
    assert cal["temperature"] > 1.0  # the fixture's probabilities are over-confident


def test_action_units_of_the_multitask_trial(run_report):
    au = run_report["doc"]["models"]["best_trial"]["au"]
    assert set(au) == {"oof", "holdout"}
    per = au["holdout"]["per_au"]
    assert len(per) == 18 and "AU12" in per
    occurring = [v["f1"] for v in per.values() if v["f1"] is not None]
    assert au["holdout"]["mean_f1"] == pytest.approx(np.mean(occurring))
    assert "au" not in run_report["doc"]["models"]["student"]  # an emotion-only head


def test_comparison_has_the_best_trial_every_ensemble_method_and_the_student(run_report):
    doc = run_report["doc"]
    names = [r["name"] for r in doc["comparison"]]
    chosen = doc["models"]["ensemble"]["method"]
    methods = [r["name"] for r in doc["ensemble_table"] if r["kind"] == "ensemble"]
    assert names[0] == "best trial t_00000" and names[-1].startswith("student")
    assert sorted(n.removeprefix("ensemble: ").removesuffix(" (chosen)") for n in names[1:-1]) == sorted(methods)
    assert f"ensemble: {chosen} (chosen)" in names
    table = {r["name"]: r for r in doc["ensemble_table"]}
    for r in doc["comparison"][1:-1]:
        method = r["name"].removeprefix("ensemble: ").removesuffix(" (chosen)")
        assert r["holdout_accuracy"] == pytest.approx(table[method]["holdout_accuracy"])
    student = doc["comparison"][-1]
    assert student["oof_accuracy"] is None and student["temperature"] is None  # no OOF rows to fit on


def test_search_history_and_study(run_report):
    doc = run_report["doc"]
    h = doc["history"]
    curves = {t["trial_id"]: t for t in h["trials"]}
    assert h["pruned"] == ["t_00003"] and curves["t_00003"]["stopped_at"] == 1
    assert curves["t_00000"]["epochs"] == [1, 2, 3] and curves["t_00000"]["stopped_at"] is None
    best = [c["best"] for c in h["best_so_far"]]
    assert best == sorted(best) and best[-1] == pytest.approx(max(m for t in h["trials"] for m in t["metric"]))
    assert h["epochs_spent"] == 10
    study = doc["study"]
    assert study["source"] == "optuna.db" and study["complete"] == 6 and len(study["trials"]) == 7
    assert set(study["importances"]) == {"optim.lr", "model.backbone", "loss.name"}
    assert sum(study["importances"].values()) == pytest.approx(1.0)
    assert doc["status"]["counts"] == {"COMPLETED": 3, "PRUNED": 1, "ERROR": 1}


def test_figures_are_written_and_listed(run_report):
    doc, out = run_report["doc"], run_report["page"].parent
    expected = {
        "confusion_best_trial",
        "reliability_best_trial",
        "au_best_trial",
        "confusion_ensemble",
        "confusion_student",
        "per_class_f1",
        "comparison",
        "best_so_far",
        "learning_curves",
        "importances",
        "parallel_coordinates",
    }
    assert expected <= set(doc["figures"])
    for rel in doc["figures"].values():
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = run_report["page"].read_text()
    assert all(f'src="{rel}"' in html for rel in doc["figures"].values())
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_importances_with_few_trials_fall_back_with_a_note():
    out = param_importances(object(), 2)
    assert out["importances"] == {} and "2 completed trial(s)" in out["note"]
    assert "no Optuna study" in param_importances(None, 10)["note"]


def test_run_without_a_study_inline_in_the_default_folder(run_copy):
    (run_copy / "optuna.db").unlink()
    page = build_report(run_copy, inline=True)
    assert page == run_copy / "report" / "index.html"
    html = page.read_text()
    assert 'src="data:image/png;base64,' in html and 'src="figures/' not in html
    assert (run_copy / "report" / "figures" / "comparison.png").is_file()
    doc = json.loads((page.parent / "report.json").read_text())
    assert doc["study"]["source"] == "results.parquet" and "no Optuna study" in doc["study"]["note"]
    assert {t["state"] for t in doc["study"]["trials"]} == {"COMPLETED", "PRUNED", "ERROR"}
    assert "parallel_coordinates" in doc["figures"] and "importances" not in doc["figures"]


def test_bundle_cross_dataset(report_bundle, tmp_path):
    from ferray.data import load_source

    source = "synthetic:basic8?count=40&size=48&seed=1"
    page = build_report(report_bundle, data=source, out=tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["kind"] == "bundle" and doc["bundle"]["method"] == "greedy"
    cross = doc["cross_dataset"]
    data = load_source(source, size=48, channels=1)
    contempt = int(np.sum(data.labels == list(data.class_names).index("contempt")))
    assert cross["class_match"]["unknown"] == ["contempt"] and cross["unknown_rows"] == {"contempt": contempt}
    assert cross["class_match"]["mapping"]["happiness"] == "happy" and cross["class_match"]["unseen"] == []
    assert cross["scored_rows"] == 40 - contempt
    assert set(cross["models"]) == {"ensemble", "student"}
    ens = cross["models"]["ensemble"]
    assert ens["data"]["rows"] == 40 - contempt
    by = ens["by_data_class"]
    assert by["rows"] == list(data.class_names) and np.asarray(by["counts"]).sum() == 40
    assert "contempt (" in page.read_text()


def test_run_with_data_uses_its_bundle(run_copy, report_bundle, tmp_path):
    import shutil

    shutil.rmtree(run_copy / "bundle", ignore_errors=True)
    with pytest.raises(DataError, match="evaluates its exported bundle .*`ferray export"):
        build_report(run_copy, data="synthetic:basic7?count=14")
    shutil.copytree(report_bundle, run_copy / "bundle")
    page = build_report(run_copy, data="synthetic:basic7?count=14&seed=3")
    doc = json.loads((page.parent / "report.json").read_text())
    assert doc["cross_dataset"]["class_match"]["unknown"] == [] and doc["cross_dataset"]["scored_rows"] == 14


def test_bundle_without_data_says_how_to_evaluate(report_bundle, tmp_path):
    page = build_report(report_bundle, out=tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert "cross_dataset" not in doc and "--data" in doc["notes"][0]
    assert [m["name"] for m in doc["bundle"]["members"]] == ["t_00000", "t_00001", "t_00002"]
    assert page.is_file()


def test_not_a_run_or_bundle(tmp_path):
    with pytest.raises(ConfigError, match="not a ferray run directory"):
        build_report(tmp_path)
    with pytest.raises(ConfigError, match="no such run directory"):
        build_report(tmp_path / "missing")
    with pytest.raises(ValueError, match="top_confused"):
        build_report(tmp_path, top_confused=0)


def _make_multi_objective(run: Path, latencies: dict[str, float]) -> None:
    """Give a run copy two objectives (accuracy, latency_ms) and each trial's last row a latency."""
    import yaml

    from ferray.run.results import read_results, write_table_atomic

    spec = yaml.safe_load((run / "spec.yaml").read_text())
    spec["search"]["objectives"] = [
        {"metric": "accuracy", "direction": "max"},
        {"metric": "latency_ms", "direction": "min"},
    ]
    (run / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    rows = read_results(run / "results.parquet")
    last = {r["trial_id"]: r for r in rows}  # rows are in report order: a trial's last row last
    for tid, ms in latencies.items():
        last[tid]["latency_ms"] = ms
    write_table_atomic(rows, run / "results.parquet")


def test_a_single_objective_run_has_no_front(run_report):
    assert "front" not in run_report["doc"] and "pareto_front" not in run_report["doc"]["figures"]
    assert "Pareto front" not in run_report["page"].read_text()


def test_a_multi_objective_run_plots_its_front(run_copy, tmp_path):
    # best fold means: t_00000 0.62, t_00001 0.56, t_00002 0.50, t_00003 (pruned) 0.25
    _make_multi_objective(run_copy, {"t_00000": 3.0, "t_00001": 1.0, "t_00002": 2.0, "t_00003": 0.5})
    page = build_report(run_copy, out=tmp_path / "report")
    doc = json.loads((page.parent / "report.json").read_text())
    front = doc["front"]
    assert (front["y"], front["x"]) == ("accuracy", "latency_ms")
    points = {p["trial_id"]: p for p in front["points"]}
    assert set(points) == {"t_00000", "t_00001", "t_00002", "t_00003"}  # the errored trial ended without values
    assert {t for t, p in points.items() if p["pareto"]} == {"t_00000", "t_00001", "t_00003"}
    assert points["t_00003"]["state"] == "PRUNED" and points["t_00000"]["x"] == 3.0
    np.testing.assert_allclose(front["step"], [[0.5, 0.25], [1.0, 0.56], [3.0, 0.62]])
    assert doc["figures"]["pareto_front"] == "figures/pareto_front.png"
    assert (page.parent / "figures" / "pareto_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert "<h3>Pareto front</h3>" in html and 'src="figures/pareto_front.png"' in html
    assert "3 of 4 ended trial(s) are Pareto-optimal" in html
