"""export_run / ``ferray export``: a run's chosen ensemble (ferray.ensemble's ensemble.json) and student."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime as ort
import pytest
from _export_helpers import CLASSES, make_trial, random_images, torch_member_probs
from _fer_helpers import parse_cli

from ferray import ensemble
from ferray.cli import command_table
from ferray.errors import DataError
from ferray.export import _cli as export_cli
from ferray.export import read_ensemble_summary
from ferray.run.layout import RunLayout


def _cli(argv: list[str]) -> int:
    args = parse_cli(export_cli, argv)
    return args.func(args)


def _stacking_summary(member_ids: list[str]) -> dict:
    """ensemble.json as ferray.ensemble.build_ensembles writes it, with a really fitted stacker."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(member_ids), 60, len(CLASSES))) * 2
    P = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = np.arange(60) % len(CLASSES)
    stack = ensemble.StackingEnsemble(inner_folds=2).fit(P, y)
    greedy = ensemble.GreedyEnsemble().fit(P, y)
    return {
        "run": "exp",
        "metric": "accuracy",
        "class_names": CLASSES,
        "data_fingerprint": "fp",
        "members": [
            {"trial_id": t, "rank": i + 1, "state": "TERMINATED", "fold_mean": 0.5} for i, t in enumerate(member_ids)
        ],
        "methods": {
            "stacking": {**stack.to_dict(), "oof_source": "inner_cv", "oof_accuracy": 0.7, "holdout_accuracy": 0.65},
            "greedy": {**greedy.to_dict(), "oof_source": "in_sample", "oof_accuracy": 0.69},
        },
        "chosen": "stacking",
        "chosen_by": "oof_log_loss",
        "max_latency_ms": 20.0,
        "latency_ms": 7.5,
    }, stack


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = RunLayout(tmp_path_factory.mktemp("runs") / "exp")
    ids = ["t00001", "t00002"]
    make_trial(run.root / ids[0], "test_resnet", seed=5)
    make_trial(run.root / ids[1], "test_resnet", seed=6)
    summary, stack = _stacking_summary(ids)
    run.ensemble.mkdir(parents=True)
    run.ensemble_files.summary.write_text(json.dumps(summary))
    make_trial(run.distill, "test_resnet", k=1, seed=7, cv=None)
    run.distill_files.summary.write_text(json.dumps({"student": {"holdout_accuracy": 0.55}}))
    (run.root / "ferray_run.json").write_text(
        json.dumps({"format": 1, "created": "2026-11-30", "spec": {"name": "exp"}})
    )
    return run, ids, stack


def test_export_command_writes_the_runs_bundle(run_dir, capsys):
    run, ids, stack = run_dir
    assert _cli(["export", str(run.root)]) == 0
    assert f"bundle: {run.bundle}" in capsys.readouterr().out
    m = json.loads((run.bundle / "manifest.json").read_text())
    assert m["ensemble"]["method"] == "stacking"
    assert [x["trial_id"] for x in m["ensemble"]["members"]] == ids
    assert np.allclose(m["ensemble"]["stacker"]["coef"], stack.coef_)
    assert m["ensemble"]["stacker"]["input"] == "log_proba" and m["ensemble"]["stacker"]["eps"] == 1e-7
    assert m["student"]["score"] == {"holdout_accuracy": 0.55}
    assert m["extra"]["run"]["name"] == "exp" and m["extra"]["run"]["spec"] == "exp"
    assert m["extra"]["ensemble_summary"]["scores"] == {"oof_accuracy": 0.7, "holdout_accuracy": 0.65}
    assert m["ensemble"]["latency"] == {"max_latency_ms": 20.0, "latency_ms": 7.5}  # as ensemble.json chose it
    # the stacking graph against PyTorch members + ferray.ensemble's own stacker
    images = random_images(6, seed=3)
    P = np.stack([torch_member_probs(run.root / t, images) for t in ids])
    expected = stack.predict_proba(P)
    session = ort.InferenceSession(str(run.bundle / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probs"], {"images": images})
    diff = float(np.abs(probs - expected).max())
    assert diff <= 1e-4
    print(f"stacking ensemble: max |onnx - torch + ferray.ensemble| = {diff:.3g}")
    student = ort.InferenceSession(str(run.bundle / "student.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(student.run(["probs"], {"images": images})[0] - torch_member_probs(run.distill, images)).max() <= 1e-4


def test_commands_table():
    parser = argparse.ArgumentParser(prog="ferray")
    export_cli.add_commands(parser.add_subparsers(dest="command"))
    assert set(command_table(parser)) == {"export"}


def test_export_without_ensemble(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(DataError, match=r"ensemble\.json: no ensemble summary; run `ferray ensemble RUN` first"):
        _cli(["export", str(tmp_path / "run")])
    with pytest.raises(DataError, match="no such run directory"):
        _cli(["export", str(tmp_path / "nope")])


def test_read_ensemble_summary_forms(tmp_path):
    path = tmp_path / "ensemble.json"
    path.write_text(
        json.dumps(
            {
                "members": [{"trial_id": "a"}, {"trial_id": "b"}],
                "chosen": "greedy",
                "methods": {
                    "greedy": {"method": "greedy", "weights": [0.75, 0.25], "oof_accuracy": 0.8, "oof_source": "x"}
                },
            }
        )
    )
    s = read_ensemble_summary(path)
    assert (s["method"], s["members"], s["weights"], s["stacker"]) == ("greedy", ["a", "b"], [0.75, 0.25], None)
    assert s["scores"] == {"oof_accuracy": 0.8}
    path.write_text(json.dumps({"method": "vote", "members": ["a", "b"]}))
    assert read_ensemble_summary(path)["weights"] is None
    path.write_text(json.dumps({"chosen": "stacking", "members": ["a"], "methods": {"greedy": {}}}))
    with pytest.raises(DataError, match=r"chosen method 'stacking' is not among methods \['greedy'\]"):
        read_ensemble_summary(path)
    path.write_text(json.dumps({"method": "stacking", "members": ["a"]}))
    with pytest.raises(DataError, match="method 'stacking' without 'coef' and 'intercept'"):
        read_ensemble_summary(path)
    path.write_text(json.dumps({"method": "mean"}))
    with pytest.raises(DataError, match="ensemble.json: no 'members'"):
        read_ensemble_summary(path)


def test_member_folder_missing(tmp_path):
    run = RunLayout(tmp_path / "run")
    run.ensemble.mkdir(parents=True)
    run.ensemble_files.summary.write_text(json.dumps({"method": "mean", "members": ["gone"]}))
    with pytest.raises(DataError, match=r"member 'gone' has no trial folder"):
        _cli(["export", str(run.root)])
