"""``predict`` applies the bundle's temperature by default.

``--no-calibration`` and old bundles give raw probabilities.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _export_helpers import random_images, softmax_t
from PIL import Image
from test_predict_cli import _REPO, _WRAPPER

from ferray.errors import DataError
from ferray.predict import Bundle, predict
from ferray.predict.__main__ import main


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return random_images(12, seed=5)


def test_predict_applies_the_stored_temperature(calibrated, faces):
    bundle = Bundle.load(calibrated["bundle"])
    t = bundle.temperature()
    assert (
        t == json.loads((calibrated["bundle"] / "manifest.json").read_text())["calibration"]["ensemble"]["temperature"]
        and t > 1.5
    )
    raw = bundle.run(faces)
    preds = predict(bundle, faces, progress=False)
    assert preds.calibrated is True and preds.temperature == t
    assert preds.calibration.startswith(f"calibrated: softmax(log p / T), T = {t:.4g} fitted on 400 out-of-fold rows")
    np.testing.assert_allclose(preds.probs(), softmax_t(raw, t), atol=1e-6)
    assert np.abs(preds.probs() - raw).max() > 0.02  # softened, visibly
    assert [p.label for p in preds] == [bundle.classes[i] for i in raw.argmax(axis=1)]
    np.testing.assert_allclose(preds.probs().sum(axis=1), 1.0, atol=1e-6)


def test_tta_is_calibrated_after_the_mean(calibrated, faces):
    bundle = Bundle.load(calibrated["bundle"])
    raw = (bundle.run(faces) + bundle.run(np.ascontiguousarray(faces[:, :, ::-1]))) / 2
    preds = predict(bundle, faces, tta=True, progress=False)
    np.testing.assert_allclose(preds.probs(), softmax_t(raw, bundle.temperature()), atol=1e-6)


def test_no_calibration_gives_the_graphs_probabilities(calibrated, faces, tmp_path, capsys):
    bundle = Bundle.load(calibrated["bundle"])
    preds = predict(bundle, faces, calibrated=False, progress=False)
    assert preds.calibrated is False and preds.temperature == 1.0 and preds.calibration.startswith("raw")
    np.testing.assert_allclose(preds.probs(), bundle.run(faces), atol=1e-7)
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(faces[:3]):
        Image.fromarray(face[:, :, 0]).save(folder / f"f{i}.png")
    assert (
        main([str(bundle.path), str(folder), "--out", str(tmp_path / "raw.json"), "--no-calibration", "--no-progress"])
        == 0
    )
    assert "probabilities: raw" in capsys.readouterr().err
    doc = json.loads((tmp_path / "raw.json").read_text())
    assert doc["calibrated"] is False and doc["temperature"] == 1.0
    got = np.array([[p["probs"][c] for c in bundle.classes] for p in doc["predictions"]])
    np.testing.assert_allclose(got, bundle.run(faces[:3]), atol=1e-7)
    assert main([str(bundle.path), str(folder), "--out", str(tmp_path / "cal.csv"), "--no-progress"]) == 0
    assert "probabilities: calibrated: softmax(log p / T), T = " in capsys.readouterr().err
    with open(tmp_path / "cal.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["temperature"]) for r in rows] == [pytest.approx(bundle.temperature(), rel=1e-5)] * 3
    got = np.array([[float(r[f"prob_{c}"]) for c in bundle.classes] for r in rows])
    np.testing.assert_allclose(got, softmax_t(bundle.run(faces[:3]), bundle.temperature()), atol=1e-6)


def test_student_keeps_t_1_and_says_why(greedy_bundle, faces):
    bundle = Bundle.load(greedy_bundle["bundle"])
    preds = predict(bundle, faces, student=True, progress=False)
    assert preds.temperature == 1.0 and "trained on every cross-validation row" in preds.calibration
    np.testing.assert_allclose(preds.probs(), bundle.run(faces, student=True), atol=1e-7)


def test_a_bundle_from_before_calibration_reads_as_t_1(calibrated, faces, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(calibrated["bundle"], old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["calibration"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    bundle = Bundle.load(old)
    assert bundle.temperature() == 1.0 and "stores no temperature" in bundle.calibration()["reason"]
    preds = predict(bundle, faces, progress=False)
    assert preds.temperature == 1.0 and "stores no temperature" in preds.calibration
    np.testing.assert_allclose(preds.probs(), bundle.run(faces), atol=1e-7)
    Image.fromarray(faces[0, :, :, 0]).save(tmp_path / "face.png")
    assert main([str(old), str(tmp_path / "face.png"), "--no-progress"]) == 0
    assert "probabilities: T = 1: the bundle stores no temperature" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda m: m["calibration"]["ensemble"].update(temperature=-2.0),
            r"manifest\.json: calibration\.ensemble\.temperature is -2\.0, but must be a finite number > 0",
        ),
        (
            lambda m: m["calibration"]["ensemble"].update(temperature="hot"),
            r"calibration\.ensemble\.temperature is 'hot'",
        ),
        (lambda m: m.update(calibration=[1.5]), r"calibration is \[1\.5\], but must be an object"),
        (lambda m: m["files"]["ensemble.onnx"].update(sha256="0" * 64), r"ensemble\.onnx: sha256 differs"),
    ],
)
def test_a_tampered_manifest_is_refused(calibrated, tmp_path, edit, match):
    copy = tmp_path / "bundle"
    shutil.copytree(calibrated["bundle"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=match):
        Bundle.load(copy)


def test_calibrated_predict_needs_neither_torch_nor_scipy(calibrated, faces, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, face in enumerate(faces[:4]):
        Image.fromarray(face[:, :, 0]).save(folder / f"f{i}.png")
    out = tmp_path / "sub.json"
    wrapper = _WRAPPER.replace("for name in (", "for name in ('scipy', ")
    env = {**os.environ, "PYTHONPATH": str(_REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, str(calibrated["bundle"]), str(folder), "--out", str(out), "--no-progress"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["calibrated"] is True and doc["temperature"] > 1.5
    here = predict(calibrated["bundle"], folder, progress=False)
    theirs = np.array([[p["probs"][c] for c in here.classes] for p in doc["predictions"]])
    np.testing.assert_allclose(theirs, here.probs(), atol=1e-7)
