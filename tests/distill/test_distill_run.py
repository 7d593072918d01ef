"""distill_run refuses bad input before Ray starts and leaves nothing half-written."""

import numpy as np
import pytest

from ferray.distill import distill_run
from ferray.errors import ConfigError, DataError
from ferray.run.predictions import read_predictions, write_predictions


@pytest.fixture(autouse=True)
def _no_ray():
    yield
    import ray

    assert not ray.is_initialized(), "a refused distillation must not start Ray"


def _leftovers(run):
    return sorted(p.name for p in run.root.iterdir() if "distill" in p.name)


def test_missing_ensemble(tiny_run):
    import shutil

    shutil.rmtree(tiny_run.layout.ensemble)
    with pytest.raises(ConfigError, match=r"run `ferray ensemble .*run` first"):
        distill_run(tiny_run.root, echo=lambda s: None)
    assert _leftovers(tiny_run) == []


def test_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match="not a ferray run directory"):
        distill_run(tmp_path / "x")
    with pytest.raises(ConfigError, match="no such run directory"):
        distill_run(tmp_path / "nope")


def test_unknown_student_backbone(tiny_run):
    with pytest.raises(ConfigError, match=r"--student: unknown backbone 'mobilenetv3_smal_050'; did you mean"):
        distill_run(tiny_run.root, student="mobilenetv3_smal_050")
    assert _leftovers(tiny_run) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "distill.epochs"),
        ({"alpha": 2.0}, "distill.alpha"),
        ({"temperature": -1.0}, "distill.temperature"),
    ],
)
def test_bad_settings(tiny_run, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        distill_run(tiny_run.root, **kwargs)


def test_fingerprint_mismatch(tiny_run):
    path = tiny_run.layout.ensemble / "oof.parquet"
    oof = read_predictions(path)
    oof.meta["data_fingerprint"] = "feedfacefeedface"
    write_predictions(oof, path)
    with pytest.raises(DataError, match="'feedfacefeedface'"):
        distill_run(tiny_run.root)
    assert _leftovers(tiny_run) == []


def test_holdout_file_with_cv_rows(tiny_run):
    path = tiny_run.layout.ensemble / "holdout.parquet"
    hold = read_predictions(path)
    hold.rows = np.asarray(tiny_run.plan.cv_index[: len(hold)])
    write_predictions(hold, path)
    with pytest.raises(DataError, match="not holdout rows"):
        distill_run(tiny_run.root)


@pytest.mark.parametrize(
    "student, match",
    [
        (["test_resnet", "mobilenetv3_smal_050"], r"--student: unknown backbone 'mobilenetv3_smal_050'; did you mean"),
        ([], r"distill.student: .*empty list"),
        (["test_resnet", "test_resnet"], r"distill.student: .*'test_resnet' twice"),
    ],
)
def test_bad_candidates(tiny_run, student, match):
    with pytest.raises(ConfigError, match=match):
        distill_run(tiny_run.root, student=student)
    assert _leftovers(tiny_run) == []


def test_a_latency_cap_no_candidate_meets_names_the_measured_latencies(tiny_run):
    lines = []
    with pytest.raises(
        ConfigError,
        match=r"distill.max_latency_ms is 1e-06, but no student candidate .*\(measured: "
        r"test_resnet [0-9.e+-]+ ms, test_efficientnet [0-9.e+-]+ ms\)",
    ):
        distill_run(tiny_run.root, student=["test_resnet", "test_efficientnet"], max_latency_ms=1e-6, echo=lines.append)
    assert any(line.startswith("distill: candidates at batch 1") for line in lines)
    assert _leftovers(tiny_run) == []


def test_bad_teacher_and_cap(tiny_run):
    with pytest.raises(ConfigError, match=r"distill.teacher: Input should be 'online' or 'fixed' \(got 'live'\)"):
        distill_run(tiny_run.root, teacher="live")
    with pytest.raises(ConfigError, match=r"distill.max_latency_ms: Input should be greater than 0 \(got -1"):
        distill_run(tiny_run.root, max_latency_ms=-1.0)


def test_online_teacher_needs_the_members_weights(tiny_run):
    import shutil

    shutil.rmtree(tiny_run.layout.trial("t0001").weights_dir)
    with pytest.raises(DataError, match=r"t0001: ensemble member has no model weights .*distill.teacher: fixed"):
        distill_run(tiny_run.root)
    assert _leftovers(tiny_run) == []


def _with_ensemble_budget(run, ms: float) -> None:
    import yaml

    raw = yaml.safe_load(run.layout.spec.read_text())
    raw["ensemble"]["max_latency_ms"] = ms
    run.layout.spec.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_the_ensembles_budget_caps_the_student_when_distill_sets_none(tiny_run):
    _with_ensemble_budget(tiny_run, 1e-6)
    with pytest.raises(
        ConfigError, match=r"ensemble.max_latency_ms is 1e-06, but no student candidate .*\(measured: test_resnet "
    ):
        distill_run(tiny_run.root, student=["test_resnet", "test_efficientnet"], echo=[].append)
    assert _leftovers(tiny_run) == []


def test_a_candidate_over_the_budget_is_skipped_with_its_latency(tiny_run, monkeypatch):
    from ferray.distill import candidate_latencies
    from ferray.training.config import ModelConfig
    from ferray.training.models import build_model

    def build(name):
        return build_model(ModelConfig(backbone=name), num_classes=7, in_chans=1, img_size=48)

    lat = candidate_latencies(["test_resnet", "resnet18"], build, (1, 48, 48))
    assert lat["resnet18"] > 4 * lat["test_resnet"]
    _with_ensemble_budget(tiny_run, (lat["test_resnet"] * lat["resnet18"]) ** 0.5)

    class Stop(Exception):
        pass

    def stop(*_a, **_k):  # the candidates are chosen before Ray starts: stop there
        raise Stop

    monkeypatch.setattr("ferray.runtime.startup.ensure_ray", stop)
    lines: list[str] = []
    with pytest.raises(Stop):
        distill_run(tiny_run.root, student=["resnet18", "test_resnet"], echo=lines.append)
    skipped = [line for line in lines if line.startswith("distill: skipping candidates over ensemble.max_latency_ms")]
    assert len(skipped) == 1 and "resnet18 (" in skipped[0] and "test_resnet" not in skipped[0]
