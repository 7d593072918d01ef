"""``evaluate_bundle`` and ``ferray evaluate``: a bundle scored on another dataset, with intervals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ferray.errors import ConfigError, DataError
from ferray.report import Evaluation, evaluate_bundle

FERPLUS_LIKE = "synthetic:basic8?count=40&size=48&seed=1"  # FER+'s classes: contempt is not a basic7 class


def test_scores_match_sklearn_and_classes_the_model_lacks_are_listed_and_excluded(report_bundle):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

    from ferray.data import load_source
    from ferray.metrics import bootstrap_metrics
    from ferray.predict import predict

    ev = evaluate_bundle(report_bundle, FERPLUS_LIKE)
    assert isinstance(ev, Evaluation) and ev.model == "ensemble" and ev.bundle == report_bundle

    data = load_source(FERPLUS_LIKE, size=48, channels=1)
    names = list(data.class_names)
    contempt = data.labels == names.index("contempt")
    assert contempt.any()
    assert ev.excluded == {"contempt": int(contempt.sum())}
    assert ev.rows == 40 and ev.scored_rows == 40 - int(contempt.sum())
    assert ev.matched["happiness"] == "happy" and ev.matched["anger"] == "angry" and ev.unseen == []

    # The reference: the bundle's own predictions on the same images, scored by scikit-learn.
    pred = predict(report_bundle, data.images, progress=False).probs().argmax(axis=1)
    assert sum(ev.excluded_predicted["contempt"].values()) == contempt.sum()
    assert ev.excluded_predicted["contempt"] == {
        c: int(n) for c, n in zip(ev.model_classes, np.bincount(pred[contempt], minlength=7)) if n
    }
    model_index = {c: i for i, c in enumerate(ev.model_classes)}
    y = np.array([model_index[ev.matched[names[label]]] for label in data.labels[~contempt]])
    p = pred[~contempt]
    labels = list(range(len(ev.model_classes)))
    assert ev.accuracy.value == pytest.approx(accuracy_score(y, p))
    assert ev.macro_f1.value == pytest.approx(f1_score(y, p, labels=labels, average="macro", zero_division=0))
    assert ev.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, p))
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    assert list(ev.per_class) == ev.model_classes
    for i, c in enumerate(ev.model_classes):
        row = ev.per_class[c]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((prec[i], rec[i], f1[i]))
        assert row["support"] == support[i]
    assert ev.per_class["happy"]["data_class"] == "happiness"

    # Seeded: the intervals are the bootstrap of these rows with seed 0, and they hold the value.
    ci = bootstrap_metrics(y, p, labels=labels, seed=0)
    assert (ev.accuracy, ev.macro_f1) == (ci["accuracy"], ci["macro_f1"])
    for interval in (ev.accuracy, ev.macro_f1):
        assert interval.low <= interval.value <= interval.high and interval.low < interval.high

    doc = ev.to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["accuracy"] == ev.accuracy._asdict() and doc["excluded"] == ev.excluded
    assert doc["bootstrap"] == {"method": "percentile", "n_boot": 1000, "level": 0.95, "seed": 0}


def test_data_sharing_no_class_with_the_model_is_an_error_naming_both(report_bundle):
    both = r"data's classes \['happily_surprised'.*share no class with the model's \['angry', 'disgust'"
    with pytest.raises(DataError, match=both):
        evaluate_bundle(report_bundle, "synthetic:compound14?count=14&size=48")


def test_a_run_evaluates_its_bundle_and_says_how_to_export_one(run_copy, report_bundle):
    shutil.rmtree(run_copy / "bundle", ignore_errors=True)
    with pytest.raises(DataError, match=r"no exported bundle .*run `ferray export .*`"):
        evaluate_bundle(run_copy, "synthetic:basic7?count=14")
    shutil.copytree(report_bundle, run_copy / "bundle")
    ev = evaluate_bundle(run_copy, "synthetic:basic7?count=14&seed=3", student=True)
    assert ev.bundle == run_copy / "bundle" and ev.model == "student"
    assert ev.excluded == {} and ev.scored_rows == 14


def test_bad_targets_and_settings(tmp_path, report_bundle):
    with pytest.raises(ConfigError, match="neither a bundle .* nor a ferray run directory"):
        evaluate_bundle(tmp_path, "synthetic:basic7?count=14")
    with pytest.raises(ConfigError, match="no such bundle or run directory"):
        evaluate_bundle(tmp_path / "missing", "synthetic:basic7?count=14")
    with pytest.raises(ValueError, match="n_boot is 0"):
        evaluate_bundle(report_bundle, "synthetic:basic7?count=14", n_boot=0)


def test_cli_exit_codes_json_out_and_table(report_bundle, tmp_path, capsys):
    from ferray.cli import main

    out = tmp_path / "eval" / "scores.json"
    assert main(["evaluate", str(report_bundle), "--data", FERPLUS_LIKE, "--json", "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    doc = json.loads(printed)
    assert json.loads(out.read_text()) == doc
    assert doc["model"] == "ensemble" and set(doc["excluded"]) == {"contempt"}
    assert doc["accuracy"]["low"] <= doc["accuracy"]["value"] <= doc["accuracy"]["high"]
    assert "evaluate: predicting 40 images" in err and f"wrote {out}" in err
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]  # no temporary file left

    assert main(["evaluate", str(report_bundle), "--data", FERPLUS_LIKE]) == 0
    text = capsys.readouterr().out
    acc = doc["accuracy"]
    assert f"accuracy           {acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}]" in text
    assert f"contempt: {doc['excluded']['contempt']} rows" in text and "happy (happiness)" in text

    assert main(["evaluate", str(report_bundle), "--data", "synthetic:compound14?count=14&size=48"]) == 2
    assert "share no class" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--data", FERPLUS_LIKE]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["evaluate", str(report_bundle), "--data", FERPLUS_LIKE, "--out", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # --data is required
        main(["evaluate", str(report_bundle)])
    assert exit_info.value.code == 2
