"""The student's trainer and the comparison measures, without Ray."""

import numpy as np
import pytest
import torch

from ferray.distill import StudentTrainer, count_parameters, group_latency, holdout_scores, pack_targets, student_config
from ferray.run.predictions import Predictions
from ferray.run.sections import DistillConfig
from ferray.search import load_search_spec


def _cfg(run, **distill):
    spec = load_search_spec(run.layout.spec, check_backbones=False)
    cfg = student_config(spec.base_config(), DistillConfig(student="test_resnet", epochs=1, batch_size=16, **distill))
    return cfg


def test_student_config_keeps_the_base_and_swaps_the_backbone(tiny_run):
    spec = load_search_spec(tiny_run.layout.spec, check_backbones=False)
    base = spec.base_config()
    cfg = student_config(base, DistillConfig(student="mobilenetv3_small_050", epochs=3))
    assert cfg.model.backbone == "mobilenetv3_small_050" and cfg.model.pretrained is False
    assert cfg.model.head == base.model.head and cfg.data == base.data and cfg.augment == base.augment
    assert cfg.run.epochs == 3 and cfg.run.batch_size == base.run.batch_size
    assert cfg.run.early_stopping_patience is None


@pytest.mark.parametrize("mix", [{}, {"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}])
def test_student_trains_on_packed_targets_and_every_parameter_learns(tiny_run, mix):
    cfg = _cfg(tiny_run)
    cfg = cfg.model_copy(
        update={
            "augment": cfg.augment.model_copy(update=mix),
            "run": cfg.run.model_copy(update={"max_steps_per_epoch": 2}),
        }
    )
    data, plan = tiny_run.data, tiny_run.plan
    cv = plan.cv_index
    targets = pack_targets(len(data), data.num_classes, cv, tiny_run.teacher[cv], data.labels[cv], 4.0)
    trainer = StudentTrainer(cfg, data, cv, targets, alpha=0.7, temperature=4.0, device="cpu")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    stats = trainer.train_epoch(0)
    assert np.isfinite(stats.train_loss) and stats.images == 32
    after = trainer.model.state_dict()
    frozen = [k for k, v in before.items() if "running" not in k and "weight" in k and torch.equal(v, after[k])]
    assert frozen == []
    probs, _ = trainer.predict(plan.holdout_index, ["hflip"])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    scores = trainer.metrics_of(plan.holdout_index, probs, None)
    assert 0.0 <= scores["accuracy"] <= 1.0 and np.isfinite(scores["loss"])


def test_student_refuses_targets_of_the_wrong_width(tiny_run):
    data = tiny_run.data
    with pytest.raises(ValueError, match="targets must be"):
        StudentTrainer(
            _cfg(tiny_run),
            data,
            tiny_run.plan.cv_index,
            np.zeros((len(data), data.num_classes)),
            alpha=0.5,
            temperature=2.0,
            device="cpu",
        )


def test_latency_and_parameters_of_a_group_add_up():
    from ferray.training.config import ModelConfig
    from ferray.training.models import build_model

    model = build_model(ModelConfig(backbone="test_resnet"), num_classes=7, in_chans=1, img_size=48)
    one = count_parameters([model])
    assert one == sum(p.numel() for p in model.parameters()) and count_parameters([model, model]) == 2 * one
    lat = group_latency([model], (1, 48, 48), batch_sizes=(1, 4), max_repeats=3, min_seconds=0.0)
    assert set(lat) == {"batch_1", "batch_4"} and all(v > 0 for v in lat.values())


def test_holdout_scores_average_the_fold_models_per_row():
    # Two fold models: fold 0 right on row 5, fold 1 wrong but less sure -> the mean is right.
    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]], np.float32)
    pred = Predictions(
        np.array([5, 5, 6, 6]),
        np.array(["a", "a", "b", "b"]),
        np.array([0, 1, 0, 1]),
        np.array([0, 0, 1, 1]),
        p,
        None,
        {"class_names": ["x", "y"]},
    )
    s = holdout_scores(pred, 2)
    assert s == {"holdout_rows": 2, "accuracy": 1.0, "macro_f1": 1.0}
