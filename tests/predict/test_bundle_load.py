"""Bundle.load: the manifest's format, every file's size and sha256, nothing executed."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from _export_helpers import CLASSES, random_images

from ferray.errors import DataError
from ferray.predict import Bundle


def test_load(greedy_bundle):
    b = Bundle.load(greedy_bundle["bundle"], verify_weights=True)
    assert b.classes == CLASSES and b.format == 1 and b.has_student
    assert b.method == "greedy" and b.members == ["trial_a", "trial_b"]
    assert b.input_size() == (48, 1) and b.input_size(student=True) == (48, 1)
    assert "members=2" in repr(b)
    probs = b.run(random_images(3))
    assert probs.shape == (3, len(CLASSES))


def test_tampered_graph(bundle_copy):
    path = bundle_copy / "ensemble.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"ensemble\.onnx: sha256 differs from the manifest: the file was modified"):
        Bundle.load(bundle_copy)


def test_truncated_graph(bundle_copy):
    path = bundle_copy / "student.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"student\.onnx: 1000 bytes, but the manifest says \d+: truncated"):
        Bundle.load(bundle_copy)


def test_missing_graph(bundle_copy):
    (bundle_copy / "ensemble.onnx").unlink()
    with pytest.raises(DataError, match=r"ensemble\.onnx: missing from the bundle"):
        Bundle.load(bundle_copy)


def test_tampered_weights_file_is_found_on_load(bundle_copy):
    path = bundle_copy / "weights" / "trial_b" / "fold_0.safetensors"
    bundle = Bundle.load(bundle_copy)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"weights/trial_b/fold_0\.safetensors: \d+ bytes, but the manifest says"):
        bundle.verify()
    # The ensemble graph reads its weights from this file: a plain load checks it like the graph.
    with pytest.raises(DataError, match=r"fold_0\.safetensors: .*truncated"):
        Bundle.load(bundle_copy)


def _edit_manifest(bundle, **changes):
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))
    return doc


def test_newer_format(bundle_copy):
    _edit_manifest(bundle_copy, format=2)
    with pytest.raises(
        DataError,
        match=r"manifest\.json: bundle format 2 is newer than this ferray reads "
        r"\(format 1\); upgrade ferray",
    ):
        Bundle.load(bundle_copy)


@pytest.mark.parametrize("fmt", ["1", 0, None, True])
def test_bad_format(bundle_copy, fmt):
    _edit_manifest(bundle_copy, format=fmt)
    with pytest.raises(DataError, match=r"manifest\.json: format is .*, but must be an integer >= 1"):
        Bundle.load(bundle_copy)


def test_not_a_bundle(tmp_path, bundle_copy):
    with pytest.raises(DataError, match=r"not a ferray bundle \(no manifest\.json\)"):
        Bundle.load(tmp_path)
    with pytest.raises(DataError, match="no such bundle folder"):
        Bundle.load(tmp_path / "nope")
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: unreadable bundle manifest"):
        Bundle.load(bundle_copy)


def test_manifest_cannot_point_outside(bundle_copy):
    doc = json.loads((bundle_copy / "manifest.json").read_text())
    doc["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "bytes": 1}
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"file '\.\./\.\./etc/passwd' lies outside the bundle"):
        Bundle.load(bundle_copy)


def test_no_student(bundle_copy):
    doc = json.loads((bundle_copy / "manifest.json").read_text())
    del doc["graphs"]["student"]
    (bundle_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="the bundle has no student model; .*predict without --student"):
        Bundle.load(bundle_copy).run(random_images(1), student=True)


def test_never_unpickles(greedy_bundle, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must not be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    b = Bundle.load(greedy_bundle["bundle"], verify_weights=True)
    assert np.isfinite(b.run(random_images(2), student=True)).all()


def test_run_checks_the_input(greedy_bundle):
    b = Bundle.load(greedy_bundle["bundle"])
    with pytest.raises(DataError, match=r"images are float32 \(2, 48, 48, 1\), but the graph takes uint8"):
        b.run(random_images(2).astype(np.float32))
