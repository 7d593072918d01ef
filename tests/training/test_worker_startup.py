"""What a fold worker and a trial driver import, and the start-up a fold worker reports (no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ferray.training._worker import HEAVY_MODULES, STARTUP_KEYS, _startup_report, summarise

#: What a fold worker process imports besides Ray: fold_worker's own imports, the dataset's class
#: (unpickled from the object store) and what the last epoch uses to write its files.
FOLD_WORKER_IMPORTS = (
    "import torch; import ferray.training._worker; from ferray.training._fold import FoldTrainer; "
    "import ferray.training.checkpoint, ferray.run.predictions, ferray.training.weights; "
    "import ferray.data._table"
)
#: What a sweep's trial function imports to validate its config and build its trainer.
TRIAL_DRIVER_IMPORTS = (
    "import ferray.search._trial; from ferray.search._plan import trial_config; "
    "from ferray.search._reaper import PlacementGroupReporter; "
    "from ferray.training import build_trainer, TrainingFailed, failure_reason; "
    "import ferray.training._worker"
)


def _run(code: str):
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys; {code}"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fold_worker_process() -> dict:
    """A fresh process after a fold worker's imports: what it loaded, and whether wandb still imports."""
    return _run(
        f"{FOLD_WORKER_IMPORTS}; loaded = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
        "try:\n    import wandb; later = wandb.__name__\nexcept ImportError:\n    later = None\n"
        "print(json.dumps({'loaded': loaded, 'wandb_later': later}))"
    )


def test_a_fold_worker_imports_none_of_the_heavy_modules(fold_worker_process):
    assert fold_worker_process["loaded"] == []


def test_timm_loads_without_wandb_and_wandb_still_imports_afterwards(fold_worker_process):
    assert fold_worker_process["wandb_later"] == "wandb"


def test_a_trial_driver_builds_its_trainer_without_importing_any_training_library(tmp_path):
    # Nor torch: the fold workers' process group is ferray's own backend, not Ray's TorchConfig,
    # whose module imports torch (in this process and in the Train controller that unpickles it).
    heavy = ("torch", "timm", "albumentations", "cv2", *HEAVY_MODULES)
    build = (
        "import types; from ferray.training.config import TrainConfig; "
        "from ferray.runtime.planner import plan_resources; from ferray.runtime.nodes import NodeSpec; "
        "cfg = TrainConfig.model_validate({'model': {'backbone': 'test_resnet', 'pretrained': False}}); "
        "plan = types.SimpleNamespace(k=2, fold=[0, 1], data_fingerprint='x'); "
        f"trainer = build_trainer(cfg, None, plan, plan_resources(2, nodes=[NodeSpec('head', 2)]), "
        f"output_dir={str(tmp_path)!r}, storage_path={str(tmp_path)!r})"
    )
    loaded = _run(
        f"{TRIAL_DRIVER_IMPORTS}; {build}; "
        f"print(json.dumps([type(trainer.backend_config).__name__, sorted(m for m in {heavy!r} if m in sys.modules)]))"
    )
    assert loaded == ["GlooConfig", []]


MARKS = {"entered": 110.0, "process_created": 104.0, "imported": 113.0, "data": 113.5, "built": 114.0}


def test_startup_phases_add_up_to_the_whole():
    out = _startup_report(MARKS, {"submitted_at": 100.0, "trial_started_at": 97.0}, 115.0, 6.5)
    assert out["trial_setup_s"] == 3.0 and out["worker_spawn_s"] == 4.0 and out["worker_process_s"] == 6.0
    assert (out["import_s"], out["data_get_s"], out["model_build_s"], out["first_batch_s"]) == (3.0, 0.5, 0.5, 1.0)
    phases = (
        "trial_setup_s",
        "worker_spawn_s",
        "worker_process_s",
        "import_s",
        "data_get_s",
        "model_build_s",
        "first_batch_s",
    )
    assert sum(out[k] for k in phases) == pytest.approx(out["startup_s"]) == 18.0
    assert out["worker_start_s"] == 10.0 and out["startup_cpu_s"] == 6.5
    assert isinstance(out["heavy_modules"], list)


def test_startup_of_ferray_train_counts_from_submission_and_a_reused_process_spawns_in_no_time():
    marks = {**MARKS, "process_created": 50.0}  # a process Ray had started before the trial
    out = _startup_report(marks, {"submitted_at": 100.0}, 115.0, 6.5)
    assert "trial_setup_s" not in out and out["startup_s"] == 15.0
    assert out["worker_spawn_s"] == 0.0 and out["worker_process_s"] == 10.0


def _fold(fold, acc, **startup):
    return {
        "fold": fold,
        "val": {"accuracy": acc, "loss": 1.0},
        "train_loss": 1.2,
        "lr": 0.01,
        "seconds": 2.0,
        "images": 64,
        **startup,
    }


def test_the_first_epoch_reports_the_fold_that_started_last():
    early = {"startup_s": 10.0, "import_s": 2.0, "worker_start_s": 5.0, "startup_cpu_s": 4.0, "heavy_modules": []}
    late = {
        "startup_s": 12.0,
        "import_s": 3.0,
        "worker_start_s": 4.0,
        "startup_cpu_s": 5.0,
        "heavy_modules": ["sklearn"],
    }
    report = summarise([_fold(0, 0.5, **early), _fold(1, 0.7, **late)], 1, "accuracy")
    assert report["startup_s"] == 12.0 and report["import_s"] == 3.0 and report["worker_start_s"] == 4.0
    assert report["startup_cpu_s"] == 9.0 and report["heavy_modules"] == ["sklearn"]
    later = summarise([_fold(0, 0.5), _fold(1, 0.7)], 2, "accuracy")
    assert not set(later) & {*STARTUP_KEYS, "startup_cpu_s", "heavy_modules"}
