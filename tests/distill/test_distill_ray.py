"""End to end: distill a tiny run's ensemble into a student on a real local Ray with 2 CPUs.

The default (online) teacher, transfer images, and two candidate backbones: both timed, both
trained on the cross-validation rows outside fold 0 and scored on it, the better retrained.
"""

import json

import numpy as np
import pytest

from ferray.run.layout import TrialLayout

pytestmark = pytest.mark.ray


@pytest.mark.timeout(300)
def test_distill_writes_a_loadable_student_and_compares_it(tiny_run, local_ray):
    """Two candidates, transfer images, the online teacher (the default): every section of distill.json."""
    import yaml

    from ferray.distill import distill_run
    from ferray.run.predictions import read_predictions
    from ferray.training.weights import load_fold_models, read_weights_meta

    # With transfer images: 21 extra faces labelled by the ensemble's member models.
    spec = yaml.safe_load(tiny_run.layout.spec.read_text())
    spec["distill"]["transfer"] = "synthetic:basic7?count=21&size=48&seed=9"
    tiny_run.layout.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    lines = []
    candidates = ["test_resnet", "test_efficientnet"]
    result = distill_run(tiny_run.root, student=candidates, epochs=1, echo=lines.append)
    print("\n".join(lines))
    out = TrialLayout(tiny_run.layout.distill)
    assert result.output_dir == tiny_run.layout.distill
    assert sorted(p.name for p in out.root.iterdir()) == ["config.yaml", "distill.json", "holdout.parquet", "weights"]
    assert [p.name for p in tiny_run.root.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    assert sum(line.startswith("distill: epoch 1/1") for line in lines) == 3  # 2 candidates, then the student
    s = json.loads((out.root / "distill.json").read_text())
    chosen = s["selection"]["chosen"]

    # The candidates: timed, scored on fold 0 (rows the holdout never shares), the best one trained.
    sel = s["selection"]
    assert sel["candidates"] == candidates and set(sel["latency_ms_batch_1"]) == set(candidates)
    assert all(v > 0 for v in sel["latency_ms_batch_1"].values()) and sel["dropped"] == []
    assert sel["fold"] == 0 and sel["rows"] == len(tiny_run.plan.val_index(0))
    assert set(sel["scores"]) == set(candidates) and all(0 <= v <= 1 for v in sel["scores"].values())
    assert chosen == max(candidates, key=lambda n: (sel["scores"][n], -sel["latency_ms_batch_1"][n]))
    assert s["training"]["student"] == chosen

    # The online teacher: the greedy ensemble's one member, its 2 fold models, leak-free by fold.
    teacher = s["teacher"]
    assert teacher["mode"] == "online" and teacher["members"] == ["t0001"] and teacher["rule"] == "weighted"
    assert teacher["weights"] == [1.0] and teacher["fold_models_per_member"] == 2 and teacher["resized"] == []
    assert "fold f is scored by each member's fold-f model only" in teacher["leak_free"]

    # The student loads like any trial's fold models, with the run's shape and data.
    (model,) = load_fold_models(out)
    meta = read_weights_meta(out.weights(0))
    assert meta["train"]["model"]["backbone"] == chosen and meta["k"] == 1 and meta["fold"] == 0
    assert meta["data_fingerprint"] == tiny_run.plan.data_fingerprint
    assert (meta["img_size"], meta["in_chans"], meta["num_classes"]) == (48, 1, 7)

    # Holdout probabilities for exactly the holdout rows.
    hold = read_predictions(out.holdout)
    np.testing.assert_array_equal(hold.rows, tiny_run.plan.holdout_index)
    np.testing.assert_allclose(hold.probs.sum(1), 1.0, rtol=1e-5)
    assert hold.meta["kind"] == "holdout" and hold.meta["data_fingerprint"] == tiny_run.plan.data_fingerprint

    assert s == result.summary
    for name in ("student", "ensemble", "best_trial"):
        section = s[name]
        assert 0.0 <= section["accuracy"] <= 1.0 and 0.0 <= section["macro_f1"] <= 1.0, name
        assert section["params"] > 0 and set(section["latency_ms_per_image"]) == {"batch_1", "batch_64"}, name
        assert all(v > 0 for v in section["latency_ms_per_image"].values()), name
    assert s["student"]["models"] == 1 and s["best_trial"]["models"] == 2 and s["ensemble"]["models"] == 2
    assert s["best_trial"]["trial_id"] == "t0001" and s["ensemble"]["members"] == ["t0001"]
    assert s["student"]["params"] == sum(p.numel() for p in model.parameters())
    if chosen == "test_resnet":  # the members' backbone: the ensemble runs 2 such fold models
        assert s["student"]["params"] * 2 == s["ensemble"]["params"]
    # The ensemble's holdout accuracy is what its holdout file says (smoothed labels, ~80% right).
    labels = tiny_run.data.labels[tiny_run.plan.holdout_index]
    expected = float(np.mean(tiny_run.teacher[tiny_run.plan.holdout_index].argmax(1) == labels))
    assert s["ensemble"]["accuracy"] == pytest.approx(expected)
    assert s["training"]["cross_validation_rows"] == len(tiny_run.plan.cv_index) and s["training"]["workers"] == 1
    assert s["training"]["transfer_rows"] == 21
    assert s["training"]["history"][0]["images_per_second"] > 0
    assert s["holdout_rows"] == len(tiny_run.plan.holdout_index)
    print(json.dumps({k: s[k] for k in ("student", "ensemble", "best_trial")}, indent=1))
