"""export_bundle: ONNX graphs that agree with PyTorch, the manifest, the weights copies."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from _export_helpers import (
    CLASSES,
    FINGERPRINT,
    make_trial,
    random_images,
    torch_ensemble_probs,
    torch_member_probs,
)

from ferray.errors import DataError
from ferray.export import ExportError, Member, export_bundle
from ferray.export._graph import (
    EnsembleGraph,
    FoldMean,
    ModelGraph,
    Preprocess,
    build_combiner,
)
from ferray.export._onnx import check_onnx, export_onnx
from ferray.run.layout import BundleLayout


def _run(path, images, outputs=("probs",)):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(list(outputs), {"images": images})


def test_greedy_ensemble_matches_pytorch(greedy_bundle):
    layout = BundleLayout(greedy_bundle["bundle"])
    images = random_images(7, seed=11)
    probs, member_probs = _run(layout.ensemble, images, ("probs", "member_probs"))
    expected = torch_ensemble_probs(greedy_bundle, images)
    diff = float(np.abs(probs - expected).max())
    assert diff <= 1e-4
    assert member_probs.shape == (7, 2, len(CLASSES))
    for i, trial in enumerate(greedy_bundle["members"]):
        assert np.abs(member_probs[:, i] - torch_member_probs(trial, images)).max() <= 1e-4
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert probs.max() - probs.min() > 0.1  # sharpened heads: far from uniform, so the check means something
    print(f"greedy ensemble: max |onnx - torch| = {diff:.3g}")


def test_student_matches_pytorch(greedy_bundle):
    images = random_images(5, seed=12)
    (probs,) = _run(BundleLayout(greedy_bundle["bundle"]).student, images)
    assert np.abs(probs - torch_member_probs(greedy_bundle["student"], images)).max() <= 1e-4


def test_manifest(greedy_bundle):
    root = greedy_bundle["bundle"]
    m = json.loads((root / "manifest.json").read_text())
    assert m["format"] == BundleLayout.FORMAT == 1
    assert m["classes"] == CLASSES
    assert m["input"] == {
        "name": "images",
        "dtype": "uint8",
        "layout": "NHWC",
        "size": 48,
        "channels": 1,
        "color": "grayscale",
        "range": [0, 255],
    }
    assert m["normalise"] == {"mean": 0.5, "std": 0.5, "in_graph": True}
    ens = m["ensemble"]
    assert ens["method"] == "greedy" and ens["weights"] == [0.75, 0.25]
    assert ens["pruned"] == ["trial_c"]
    assert [x["trial_id"] for x in ens["members"]] == ["trial_a", "trial_b"]
    first = ens["members"][0]
    assert first["backbone"] == "test_resnet" and first["folds"] == 2
    assert first["config"]["model"]["backbone"] == "test_resnet"
    assert first["score"]["cv"] == pytest.approx(0.61) and first["score"]["metric"] == "accuracy"
    assert first["weights"] == ["weights/trial_a/fold_0.safetensors", "weights/trial_a/fold_1.safetensors"]
    assert m["student"]["name"] == "student" and m["student"]["weights"] == ["weights/student/fold_0.safetensors"]
    assert m["data"] == {"fingerprint": FINGERPRINT, "fold_seed": 7, "k": 2}
    assert m["exporter"] in ("dynamo", "torchscript")
    assert set(m["versions"]) >= {"ferray", "torch", "timm", "onnx", "onnxruntime"}
    assert m["extra"] == {"note": "test"}
    for key in ("ensemble", "student"):
        g = m["graphs"][key]
        assert g["max_abs_diff"] <= 1e-4 and g["tolerance"] == 1e-4 and g["opset"] >= 17
    assert m["graphs"]["ensemble"]["outputs"] == ["probs", "member_probs"]
    # every file is listed with its sha256; nothing else lies in the bundle
    listed = set(m["files"])
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    assert {"ensemble.onnx", "student.onnx", "weights/trial_b/fold_1.safetensors"} <= listed
    for name, entry in m["files"].items():
        data = (root / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    # the weights are byte-for-byte copies; the graph is one self-contained file
    src = greedy_bundle["members"][1] / "weights" / "fold_1.safetensors"
    assert (root / "weights/trial_b/fold_1.safetensors").read_bytes() == src.read_bytes()
    assert not list(root.glob("*.onnx.data"))
    assert not list(root.parent.glob(".bundle.tmp-*"))


def test_echo_reports_each_graph(greedy_bundle):
    text = "\n".join(greedy_bundle["echo"])
    assert "ensemble.onnx" in text and "student.onnx" in text and "max |onnxruntime - torch|" in text


def test_members_must_share_classes(tmp_path, greedy_bundle):
    other = make_trial(tmp_path / "odd", classes=["a", "b", "c", "d"], k=1)
    with pytest.raises(DataError, match=r"member 'odd': classes is \['a', 'b', 'c', 'd'\], but 'trial_a' has"):
        export_bundle([greedy_bundle["members"][0], other], tmp_path / "b", method="mean")
    assert not (tmp_path / "b").exists()


def test_member_without_weights(tmp_path):
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(DataError, match="unfinished: no model weights"):
        export_bundle([tmp_path / "unfinished"], tmp_path / "b", method="mean")


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path, greedy_bundle):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="precious: a non-empty folder that is not a ferray bundle"):
        export_bundle(greedy_bundle["members"], out, method="mean")
    assert (out / "notes.txt").read_text() == "keep me"


def test_disagreement_names_the_member(greedy_bundle):
    """check_onnx against a graph whose second member was changed names that member."""
    members = [Member.from_trial(t) for t in greedy_bundle["members"]]
    with torch.no_grad():
        members[1].models[0].emotion_head.bias.add_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    graph = EnsembleGraph(
        [FoldMean(m.models) for m in members],
        build_combiner("greedy", n_members=2, n_classes=4, weights=[3, 1]),
        Preprocess(channels=1),
    )
    with pytest.raises(
        ExportError,
        match=r"ensemble.onnx: ONNX output '(member_)?probs' differs from PyTorch by "
        r".* > 0.0001; member 'trial_b' differs by",
    ):
        check_onnx(
            graph,
            BundleLayout(greedy_bundle["bundle"]).ensemble,
            size=48,
            channels=1,
            output_names=["probs", "member_probs"],
            what="ensemble.onnx",
            parts={"member_probs": ["trial_a", "trial_b"]},
        )


def test_falls_back_to_torchscript_exporter(tmp_path, greedy_bundle, monkeypatch):
    student = Member.from_trial(greedy_bundle["student"])
    graph = ModelGraph(FoldMean(student.models), Preprocess(channels=1))
    real = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated torch.export failure")
        return real(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    path = tmp_path / "student.onnx"
    info = export_onnx(graph, path, size=48, channels=1, output_names=["probs"], what="student.onnx")
    assert info["exporter"] == "torchscript"
    assert "simulated torch.export failure" in info["fallback_reason"]
    assert check_onnx(graph, path, size=48, channels=1, output_names=["probs"], what="student.onnx") <= 1e-4


def test_replaces_an_old_bundle_and_takes_models_in_memory(tmp_path, greedy_bundle):
    out = tmp_path / "bundle"
    shutil.copytree(greedy_bundle["bundle"], out)
    trained = Member.from_trial(greedy_bundle["student"])
    member = Member.from_models(trained.models, trained.meta, name="solo")
    export_bundle([member], out, method="mean")
    m = json.loads((out / "manifest.json").read_text())
    assert [x["name"] for x in m["ensemble"]["members"]] == ["solo"] and m["student"] is None
    assert not (out / "student.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # weights of a model given in memory are saved in ferray's weights format
    from ferray.training.weights import load_weights, read_weights_meta

    path = out / "weights" / "solo" / "fold_0.safetensors"
    assert read_weights_meta(path)["class_names"] == CLASSES
    saved = load_weights(path)
    for key, value in trained.models[0].state_dict().items():
        assert torch.equal(saved[key], value), key
