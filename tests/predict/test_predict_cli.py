"""``ferray predict`` (``python -m ferray.predict``): outputs, exit codes, and no torch or Ray."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferray.cli import command_table
from ferray.predict import predict
from ferray.predict.__main__ import main
from ferray.predict._cli import add_commands

_REPO = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter where importing any of these raises ImportError.
# Beyond torch and Ray, nothing that `pip install ferray[predict]` alone would lack (numpy, Pillow,
# onnxruntime, OpenCV) may be needed either: no tqdm/rich (a plain progress line instead), no
# pydantic/yaml/pyarrow/safetensors/onnx.
_BLOCKED = (
    "torch",
    "torchvision",
    "ray",
    "timm",
    "albumentations",
    "ferray.training",
    "ferray.search",
    "ferray.export",
    "ferray.data",
    "ferray.ensemble",
    "ferray.distill",
    "pyarrow",
    "pandas",
    "pydantic",
    "yaml",
    "sklearn",
    "optuna",
    "safetensors",
    "onnx",
    "onnxscript",
    "tqdm",
    "rich",
)
_WRAPPER = (
    "import sys\n"
    f"for name in {_BLOCKED!r}:\n"
    "    sys.modules[name] = None\n"
    "from ferray.predict.__main__ import main\n"
    "rc = main(sys.argv[1:])\n"
    "loaded = sorted(m for m in sys.modules\n"
    "                if m.split('.')[0] in ('torch', 'ray', 'timm') and sys.modules[m] is not None)\n"
    "print('LOADED', loaded, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


@pytest.fixture
def images(tmp_path) -> Path:
    rng = np.random.default_rng(9)
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    (root / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_commands_table():
    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    assert set(command_table(parser)) == {"predict"}


def test_csv_and_json_out(greedy_bundle, images, tmp_path, capsys):
    assert main([str(greedy_bundle["bundle"]), str(images), "--out", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped: " in err and "zz_broken.png" in err and "5 prediction(s), 1 skipped" in err
    with open(tmp_path / "p.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert (
        main(
            [
                str(greedy_bundle["bundle"]),
                str(images),
                "--out",
                str(tmp_path / "p.json"),
                "--tta",
                "--student",
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["model"] == "student" and doc["tta"] is True and len(doc["predictions"]) == 5


def test_table_on_stdout(greedy_bundle, images, capsys):
    assert main([str(greedy_bundle["bundle"]), str(images / "img0.png"), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["source", "face", "label", "score"] and len(out) == 2


def test_exit_codes(greedy_bundle, images, tmp_path, capsys):
    assert main([str(greedy_bundle["bundle"]), str(images), "--out", str(tmp_path / "p.txt")]) == 2
    assert "use a .csv or .json file" in capsys.readouterr().err
    assert main([str(tmp_path), str(images)]) == 2
    assert "not a ferray bundle" in capsys.readouterr().err
    assert main([str(greedy_bundle["bundle"]), str(images / "zz_broken.png"), "--no-progress"]) == 1
    assert "no input could be predicted" in capsys.readouterr().err


def test_runs_without_torch_or_ray(greedy_bundle, images, tmp_path):
    """A fresh interpreter where importing torch/ray/timm fails gives the in-process probabilities."""
    out = tmp_path / "sub.json"
    env = {**os.environ, "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(greedy_bundle["bundle"]), str(images), "--out", str(out), "--tta"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr
    assert "predict: 6/6 images" in proc.stderr  # the plain progress line (tqdm is blocked)
    doc = json.loads(out.read_text())
    here = predict(greedy_bundle["bundle"], images, tta=True, progress=False)
    assert [p["source"] for p in doc["predictions"]] == [p.source for p in here]
    theirs = np.array([[p["probs"][c] for c in here.classes] for p in doc["predictions"]])
    np.testing.assert_allclose(theirs, here.probs(), atol=1e-7)
    assert [s["source"] for s in doc["skipped"]] == [s.source for s in here.skipped]


@pytest.mark.parametrize("module", ["torch", "ray", "ferray.training"])
def test_blocking_works(module):
    """The wrapper's blocking really makes these imports fail (so the test above would notice one)."""
    code = _WRAPPER.split("from ferray.predict")[0] + f"import {module}\n"
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and f"import of {module} halted" in proc.stderr


def test_ferray_cli_predict_without_torch(greedy_bundle, images, tmp_path):
    """``ferray predict`` through ``ferray.cli`` (which wires predict in) stays torch-free."""
    import ferray.cli

    predict_only = ferray.cli.command_table(ferray.cli._predict_only_parser())
    assert ferray.cli.command_table()["predict"] is predict_only["predict"]
    code = _WRAPPER.replace(repr(_BLOCKED), repr(("torch", "torchvision", "ray", "timm"))).replace(
        "from ferray.predict.__main__ import main\nrc = main(sys.argv[1:])",
        "from ferray.cli import main\nrc = main(['predict', *sys.argv[1:]])",
    )
    assert "from ferray.cli import main" in code and "'albumentations'" not in code
    env = {**os.environ, "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "cli.json"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(greedy_bundle["bundle"]), str(images), "--out", str(out), "--no-progress"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr and len(json.loads(out.read_text())["predictions"]) == 5
