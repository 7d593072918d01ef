"""Choosing the student among candidates: the latency cap and the pick, without Ray."""

import pytest

from ferray.distill import apply_latency_cap, candidate_latencies, pick_candidate, student_config
from ferray.errors import ConfigError
from ferray.run.sections import DistillConfig
from ferray.search import load_search_spec


def test_the_cap_drops_the_slower_candidates_in_the_given_order():
    latencies = {"b": 3.0, "a": 0.5, "c": 1.2}
    assert apply_latency_cap(latencies, 1.2) == (["a", "c"], ["b"])
    assert apply_latency_cap(latencies, None) == (["b", "a", "c"], [])


def test_a_cap_no_candidate_meets_names_every_measured_latency():
    with pytest.raises(
        ConfigError,
        match=r"distill.max_latency_ms is 0.2, but no student candidate is that fast "
        r"at batch 1 on this CPU \(measured: b 3 ms, a 0.5 ms\); raise",
    ):
        apply_latency_cap({"b": 3.0, "a": 0.5}, 0.2)


def test_the_most_accurate_candidate_wins_and_ties_go_to_the_faster():
    assert pick_candidate({"a": 0.5, "b": 0.7, "c": 0.6}) == "b"
    assert pick_candidate({"a": 0.7, "b": 0.7}, {"a": 2.0, "b": 1.0}) == "b"
    assert pick_candidate({"a": 0.7, "b": 0.7}) == "a"  # no latencies: the first listed
    assert pick_candidate({"a": float("nan"), "b": 0.1}) == "b"


def test_candidates_are_timed_as_built_models():
    from ferray.training.config import ModelConfig
    from ferray.training.models import build_model

    built = []

    def build(name):
        built.append(name)
        return build_model(ModelConfig(backbone=name), num_classes=7, in_chans=1, img_size=48)

    lat = candidate_latencies(["test_resnet", "test_efficientnet"], build, (1, 48, 48), max_repeats=3, min_seconds=0.0)
    assert built == ["test_resnet", "test_efficientnet"] and list(lat) == built and all(v > 0 for v in lat.values())


def test_patient_default_epochs_are_a_multiple_of_the_members(tiny_run):
    spec = load_search_spec(tiny_run.layout.spec, check_backbones=False)
    base = spec.base_config()
    assert base.run.epochs == spec.budget.max_epochs
    cfg = student_config(base, DistillConfig(student="test_resnet"))
    assert cfg.run.epochs == DistillConfig.EPOCHS_FACTOR * spec.budget.max_epochs > spec.budget.max_epochs
    assert student_config(base, DistillConfig(student="test_resnet", epochs=2)).run.epochs == 2


def test_several_candidates_need_the_one_to_train_named(tiny_run):
    base = load_search_spec(tiny_run.layout.spec, check_backbones=False).base_config()
    settings = DistillConfig(student=["test_resnet", "test_efficientnet"])
    assert settings.candidates == ["test_resnet", "test_efficientnet"]
    assert student_config(base, settings, "test_efficientnet").model.backbone == "test_efficientnet"
    with pytest.raises(ValueError, match="lists 2 candidates"):
        student_config(base, settings)


def test_the_cap_is_distills_own_else_the_ensembles_budget():
    from ferray.distill import latency_cap

    assert latency_cap(2.0, 9.0) == (2.0, "distill.max_latency_ms")
    assert latency_cap(None, 9.0) == (9.0, "ensemble.max_latency_ms")
    assert latency_cap(None, None) == (None, None)
