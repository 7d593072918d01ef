"""Every Ray internal ferray uses is still where ferray reaches for it (fails on a Ray upgrade that moves one)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from ferray.runtime import compat


@pytest.mark.parametrize("workaround", compat.WORKAROUNDS, ids=lambda w: w.name)
def test_each_private_ray_access_is_available_in_the_installed_ray(workaround):
    assert workaround.probe(), f"{workaround.what} moved: {workaround.why}"


def test_installed_ray_is_in_the_tested_range():
    import ray
    from packaging.specifiers import SpecifierSet

    assert ray.__version__ in SpecifierSet(",".join(compat.TESTED_RAY))


def test_pyproject_pins_the_tested_ray_range():
    from pathlib import Path

    import tomllib

    deps = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    ray = next(d for d in deps if d.startswith("ray["))
    assert ray.endswith(",".join(compat.TESTED_RAY)), ray


def test_a_missing_required_internal_is_a_clear_error(monkeypatch):
    broken = compat.Workaround(
        "asha-rungs",
        "ASHAScheduler._brackets",
        "save ASHA's rungs",
        None,
        lambda: (_ for _ in ()).throw(AttributeError("no _brackets")),
    )
    monkeypatch.setattr(compat, "WORKAROUNDS", (broken,))
    with pytest.raises(
        compat.RayCompatError,
        match=r"asha-rungs: ASHAScheduler\._brackets \(AttributeError: no "
        r"_brackets\) -- needed to save ASHA's rungs",
    ):
        compat.require()


def test_a_missing_optional_internal_names_its_fallback(monkeypatch, caplog):
    gone = compat.Workaround(
        "raylet-messages",
        "ray._private.worker.print_to_stdstream",
        "quiet output",
        "raylet messages show on the terminal",
        lambda: False,
    )
    monkeypatch.setattr(compat, "WORKAROUNDS", (gone,))
    results = compat.require()
    assert results[0][1] is False
    assert "fallback: raylet messages show on the terminal" in caplog.text
    assert "fallbacks: raylet-messages" in compat.summary(results)


def test_every_private_module_path_named_imports():
    for module in (
        "ray.train.v2._internal.execution.callback",
        "ray.train.v2._internal.execution.context",
        "ray.train.v2._internal.execution.worker_group.state",
        "ray.tune.impl.tuner_internal",
        "ray._private.worker",
        "ray.tune.search.search_generator",
        "ray.tune.experiment.trial",
    ):
        importlib.import_module(module)


def test_doctor_reports_versions_and_internals_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "ferray.cli", "doctor", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["ray"]["version"]
    assert {i["name"] for i in report["ray"]["internals"]} == {w.name for w in compat.WORKAROUNDS}


@pytest.mark.parametrize("datasets, kept", [(None, False), ({"train": lambda: None}, True)])
def test_a_trainer_without_datasets_starts_no_dataset_manager(datasets, kept):
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = compat.trainer_without_pg_cleaner(TorchTrainer)(
        lambda config: None, datasets=datasets, scaling_config=ScalingConfig(num_workers=2)
    )
    names = [type(c).__name__ for c in trainer._create_default_callbacks()]
    assert "PlacementGroupCleanerCallback" not in names and ("DatasetsCallback" in names) is kept


def test_a_local_ray_turns_off_the_preemption_watcher_only_where_ray_has_the_flag(monkeypatch):
    assert compat.local_ray_environment() == {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
    monkeypatch.setattr(compat, "_preemption_flag_probe", lambda: (_ for _ in ()).throw(ImportError("moved")))
    assert compat.local_ray_environment() == {}


def test_train_runs_poll_their_workers_every_quarter_second_only_where_ray_has_the_variable(monkeypatch):
    assert compat.train_environment() == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
    monkeypatch.setattr(compat, "_poll_interval_probe", lambda: (_ for _ in ()).throw(ImportError("moved")))
    assert compat.train_environment() == {}
