"""Each weight stored once: the graphs read the bundle's weights files, which are the trials' files.

The bundles here are real exports of tiny models (see ``_export_helpers``); the trial weights
are removed and converted by the retention policy's own :func:`ferray.run.retention.clean_trials`.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest
from _export_helpers import make_trial, random_images, torch_ensemble_probs, torch_member_probs

from ferray.errors import DataError
from ferray.export import export_bundle
from ferray.predict import Bundle
from ferray.run.disk import directory_size
from ferray.run.layout import BundleLayout, RunLayout
from ferray.run.retention import TrialCleanup, clean_trials


def _weights_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def test_graphs_read_their_weights_from_the_weights_files(greedy_bundle):
    root = greedy_bundle["bundle"]
    manifest = json.loads((root / BundleLayout.MANIFEST).read_text())
    weights = _weights_bytes(root / BundleLayout.WEIGHTS)
    graphs = sum((root / g["file"]).stat().st_size for g in manifest["graphs"].values())
    # One copy of the weights, plus graphs that hold the computation and a few constants
    # (tens of kilobytes a model: a large share only of models as tiny as these).
    assert directory_size(root) == weights + graphs + (root / BundleLayout.MANIFEST).stat().st_size
    assert graphs < 0.1 * weights, (graphs, weights)
    ensemble = manifest["graphs"]["ensemble"]
    member_files = [f for m in manifest["ensemble"]["members"] for f in m["weights"]]
    assert ensemble["files"] == [BundleLayout.ENSEMBLE] + sorted(member_files)
    assert manifest["graphs"]["student"]["files"] == [BundleLayout.STUDENT, "weights/student/fold_0.safetensors"]
    assert ensemble["initializers"]["embedded_bytes"] < 1024  # the preprocessing and combiner constants
    assert ensemble["initializers"]["linked_bytes"] > 0.7 * weights
    proto = onnx.load(str(root / BundleLayout.ENSEMBLE), load_external_data=False)
    locations = {
        e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"
    }  # relative to the graph's folder: the bundle can move
    assert locations == set(member_files)


def test_bundle_weights_are_the_trials_files(greedy_bundle):
    root = greedy_bundle["bundle"]
    for trial in greedy_bundle["members"]:
        for i in range(2):
            assert os.path.samefile(
                trial / "weights" / f"fold_{i}.safetensors", root / f"weights/{trial.name}/fold_{i}.safetensors"
            )
    # du-style: the members' weights below the trials and the bundle count once.
    parent = greedy_bundle["root"]
    trials_and_bundle = directory_size(parent)
    naive = sum(p.stat().st_size for p in parent.rglob("*") if p.is_file())
    assert naive - trials_and_bundle == _weights_bytes(root / BundleLayout.WEIGHTS)


def test_corrupted_weights_file_is_refused_by_name(tmp_path, greedy_bundle):
    copy = shutil.copytree(greedy_bundle["bundle"], tmp_path / "bundle")
    target = copy / "weights" / greedy_bundle["members"][0].name / "fold_1.safetensors"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF  # a byte of a tensor the graph reads; the size stays the same
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"fold_1\.safetensors: sha256 differs from the manifest"):
        Bundle.load(copy)  # the graph's weights are checked like the graph, without verify_weights


def _run_with_trial(tmp_path):
    """A run folder with one trial (test_resnet, one fold) and its bundle."""
    run = RunLayout(tmp_path / "run")
    trial = make_trial(run.root / "t00001", "test_resnet", k=1, seed=5)
    bundle = export_bundle([trial], run.bundle, method="mean")
    return run, trial, bundle


def test_bundle_outlives_the_trials_weights_and_moves(tmp_path):
    run, trial, bundle = _run_with_trial(tmp_path)
    images = random_images(6, seed=3)
    expected = torch_member_probs(trial, images)
    before = Bundle.load(bundle).run(images)
    np.testing.assert_allclose(before, expected, atol=1e-5)
    # The retention policy removes the trial's weights: the bundle's hard links keep the bytes.
    (done,) = clean_trials(
        run.root, [TrialCleanup("t00001", "COMPLETED", "test", remove=[trial / "weights"])], source="test"
    )
    assert done.files == 1 and not (trial / "weights").exists()
    moved = shutil.move(str(shutil.copytree(bundle, tmp_path / "copy")), tmp_path / "elsewhere" / "bundle")
    shutil.rmtree(run.root)
    again = Bundle.load(moved, verify_weights=True)
    np.testing.assert_array_equal(again.run(images), before)


def test_float16_trial_weights_after_export_leave_the_bundle_float32(tmp_path):
    run, trial, bundle = _run_with_trial(tmp_path)
    images = random_images(6, seed=4)
    before = Bundle.load(bundle).run(images)
    clean_trials(
        run.root,
        [TrialCleanup("t00001", "COMPLETED", "test", convert=[trial / "weights" / "fold_0.safetensors"])],
        source="test",
    )  # replaced, not edited in place: the bundle's link still holds the float32 file
    assert not os.path.samefile(trial / "weights" / "fold_0.safetensors", bundle / "weights/t00001/fold_0.safetensors")
    np.testing.assert_array_equal(Bundle.load(bundle, verify_weights=True).run(images), before)


def test_float16_members_are_read_as_float16_and_agree_with_float32(tmp_path):
    """A member stored as float16 (``half_precision_weights``): the graph reads the float16 bytes
    and casts them; its probabilities stay within 1e-3 of the float32 model's."""
    run = RunLayout(tmp_path / "run")
    trials = [make_trial(run.root / f"t0000{i}", "test_resnet", k=2, seed=i) for i in (1, 2)]
    images = random_images(32, seed=5)
    info = {"members": trials, "weights": [0.5, 0.5]}
    float32 = torch_ensemble_probs(info, images)
    files = [p for t in trials for p in sorted((t / "weights").glob("*.safetensors"))]
    full = sum(p.stat().st_size for p in files)
    clean_trials(
        run.root,
        [
            TrialCleanup(t.name, "COMPLETED", "test", convert=sorted((t / "weights").glob("*.safetensors")))
            for t in trials
        ],
        source="test",
    )
    half = sum(p.stat().st_size for p in files)
    assert half < 0.55 * full
    bundle = export_bundle(trials, run.bundle, method="mean")
    manifest = json.loads((bundle / BundleLayout.MANIFEST).read_text())
    inits = manifest["graphs"]["ensemble"]["initializers"]
    assert inits["float16_bytes"] > 0.9 * half and inits["linked_bytes"] == 0
    assert inits["embedded_bytes"] < 1024 and directory_size(bundle) < 1.15 * half
    got = Bundle.load(bundle).run(images)
    np.testing.assert_allclose(got, torch_ensemble_probs(info, images), atol=1e-5)  # the float16 models, exactly
    np.testing.assert_allclose(got, float32, atol=1e-3)  # the float32 models: the storage's whole effect
    assert (got.argmax(1) == float32.argmax(1)).mean() >= 0.95
