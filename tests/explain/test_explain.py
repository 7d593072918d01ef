"""``explain`` on a run and on a bundle: overlays, the ensemble map, bad input, the CLI."""

from __future__ import annotations

import argparse
import json
import re
import shutil

import numpy as np
import pytest
from _fer_helpers import parse_cli
from PIL import Image

from ferray.errors import ConfigError, DataError
from ferray.explain import METHODS, explain
from ferray.explain._cam import FILE_TAGS

from .conftest import CLASSES, WEIGHTS


def test_run_ensemble_map_is_the_weighted_mean_of_member_maps(explain_run, faces, tmp_path):
    result = explain(explain_run, faces, method="gradcam", out=tmp_path)
    assert len(result.images) == 3
    for item in result.images:
        assert item.image.shape == (48, 48, 1)  # 64x64 RGB converted as training did
        assert set(item.maps) == {"t_a", "t_b"}
        expected = WEIGHTS[0] * item.maps["t_a"] + WEIGHTS[1] * item.maps["t_b"]
        np.testing.assert_allclose(item.ensemble_map, expected, rtol=1e-6, atol=1e-6)
        assert item.ensemble_map.shape == (48, 48)
        np.testing.assert_allclose(
            item.probs, WEIGHTS[0] * item.member_probs["t_a"] + WEIGHTS[1] * item.member_probs["t_b"], rtol=1e-5
        )
        assert item.target == int(np.argmax(item.probs))  # default: the predicted class
        assert item.file.is_file() and Image.open(item.file).size[0] > 0
    doc = json.loads((tmp_path / "explain.json").read_text())
    assert doc["kind"] == "run" and doc["method"] == "gradcam"
    assert [m["name"] for m in doc["members"]] == ["t_a", "t_b"]
    assert [m["weight"] for m in doc["members"]] == pytest.approx(WEIGHTS)
    assert doc["target_layers"]["t_a"][0]["path"] == "layer4[-1]"
    first = doc["images"][0]
    assert first["predicted"]["class"] in CLASSES and len(first["top"]) == 3
    assert first["top"][0]["prob"] >= first["top"][1]["prob"] >= first["top"][2]["prob"]
    assert set(first["members"]) == {"t_a", "t_b"}
    assert (tmp_path / first["file"]).is_file() and (tmp_path / "grid.png").is_file()


def test_member_maps_average_the_fold_models(explain_run, faces):
    import torch

    from ferray.explain import CAMExplainer
    from ferray.training.augment import apply_batch, build_eval_transform
    from ferray.training.weights import load_fold_models

    result = explain(explain_run, faces[:1], method="gradcam", member="t_b", target="sad", write=False)
    item = result.images[0]
    assert set(item.maps) == {"t_b"} and item.ensemble_map is None
    x = torch.from_numpy(apply_batch(build_eval_transform(48, 1), item.image[None]))
    folds = [CAMExplainer(m, "gradcam")(x, [CLASSES.index("sad")])[0] for m in load_fold_models(explain_run / "t_b")]
    np.testing.assert_allclose(item.map, np.mean(folds, axis=0), atol=1e-6)


def test_bundle_uses_its_weights_and_its_graph(explain_bundle, faces, tmp_path):
    from ferray.predict import Bundle, predict

    result = explain(explain_bundle, faces, method="gradcam++", target="happy", out=tmp_path)
    bundle = Bundle.load(explain_bundle)
    assert bundle.temperature() > 1.2
    raw = bundle.run(np.stack([i.image for i in result.images]))
    shown = np.stack([i.probs for i in result.images])
    # the probabilities `ferray predict` gives: the graph's, with the bundle's temperature
    predicted = predict(bundle, np.stack([i.image for i in result.images]), progress=False)
    calibrated = np.array([[r.probs[c] for c in CLASSES] for r in predicted])
    np.testing.assert_allclose(shown, calibrated, atol=1e-5)
    assert np.array_equal(shown.argmax(axis=1), raw.argmax(axis=1)) and shown.max() < raw.max()
    for item in result.images:
        assert item.target == CLASSES.index("happy")
        np.testing.assert_allclose(
            item.ensemble_map, WEIGHTS[0] * item.maps["t_a"] + WEIGHTS[1] * item.maps["t_b"], atol=1e-6
        )
    # the file names carry the method: gradcam++ -> gradcampp, never gradcam's name
    names = [f"{k:03d}_array_{k}_gradcampp.png" for k in range(len(faces))]
    assert [i.file.name for i in result.images] == names
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [*names, "grid.png"]
    doc = json.loads((tmp_path / "explain.json").read_text())
    assert [img["file"] for img in doc["images"]] == names
    assert doc["kind"] == "bundle" and doc["target"] == "happy"
    assert doc["ensemble_probs"] == "the bundle's ensemble.onnx" and doc["temperature"] == bundle.temperature()
    assert all(img["target"] == "happy" for img in doc["images"])


def test_integrated_gradients_on_one_member(explain_bundle, faces, tmp_path):
    result = explain(explain_bundle, faces[:2], method="ig", member=1, ig_steps=8, out=tmp_path)
    assert [set(i.maps) for i in result.images] == [{"t_b"}, {"t_b"}]
    assert all(i.map.shape == (48, 48) and i.map.max() == pytest.approx(1.0) for i in result.images)


def test_integrated_gradients_ensemble_map_is_the_weighted_mean(explain_run, faces):
    result = explain(explain_run, faces[:2], method="ig", ig_steps=4, target="happy", write=False)
    for item in result.images:
        assert set(item.maps) == {"t_a", "t_b"} and item.ensemble_map.shape == (48, 48)
        np.testing.assert_allclose(
            item.ensemble_map, WEIGHTS[0] * item.maps["t_a"] + WEIGHTS[1] * item.maps["t_b"], atol=1e-6
        )
        assert not np.allclose(item.maps["t_a"], item.maps["t_b"])


def test_image_files_of_another_size(explain_run, faces, tmp_path):
    paths = []
    for i, img in enumerate(faces[:2]):
        paths.append(tmp_path / f"face {i}.png")
        Image.fromarray(img).resize((80, 60)).save(paths[-1])
    result = explain(explain_run, [str(p) for p in paths], method="eigencam", out=tmp_path / "out")
    assert [i.image.shape for i in result.images] == [(48, 48, 1)] * 2
    assert result.images[0].file.name == "000_face_0_eigencam.png"
    assert json.loads((tmp_path / "out" / "explain.json").read_text())["class_agnostic"] is True


def test_unreadable_images_are_skipped_and_none_left_is_an_error(explain_run, faces, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    good = tmp_path / "good.png"
    Image.fromarray(faces[0]).save(good)
    result = explain(explain_run, [str(bad), str(good)], write=False)
    assert len(result.images) == 1 and result.skipped[0]["source"] == str(bad)
    with pytest.raises(DataError, match="no image to explain"):
        explain(explain_run, [str(bad)], write=False)


def test_faces_are_cropped_by_the_detector(explain_run, faces):
    def detector(gray):
        return [(8, 8, 40, 40), (0, 0, 32, 32)] if gray.mean() > 0 else []

    images = np.concatenate([faces[:1], np.zeros((1, 64, 64, 3), np.uint8)])
    result = explain(explain_run, images, faces=detector, write=False)
    assert [(i.source, i.face, i.box) for i in result.images] == [
        ("array[0]", 0, (8, 8, 40, 40)),
        ("array[0]", 1, (0, 0, 32, 32)),
    ]
    assert result.skipped == [{"source": "array[1]", "reason": "no face found"}]
    assert result.images[0].image.shape == (48, 48, 1)


@pytest.mark.parametrize(
    "member, match",
    [
        ("t_c", r"unknown member 't_c'; did you mean 't_[ab]'.*\(members: 0 \(t_a\), 1 \(t_b\)\)"),
        (5, r"member 5 does not exist \(members: 0 \(t_a\), 1 \(t_b\)\)"),
        ("student", r"no distilled student \(members: 0 \(t_a\), 1 \(t_b\)\)"),
    ],
)
def test_unknown_member_names_the_valid_ones(explain_run, faces, member, match):
    with pytest.raises(ConfigError, match=match):
        explain(explain_run, faces, member=member, write=False)


@pytest.mark.parametrize(
    "target, match",
    [
        ("happiness", r"unknown target class 'happiness'.*classes: angry, happy, neutral, sad"),
        (7, r"target class 7 does not exist; classes: 0 \(angry\), 1 \(happy\)"),
    ],
)
def test_unknown_target_names_the_classes(explain_run, faces, target, match):
    with pytest.raises(ConfigError, match=match):
        explain(explain_run, faces, target=target, write=False)


def test_every_method_has_its_own_file_safe_tag():
    assert set(FILE_TAGS) == set(METHODS)
    assert all(re.fullmatch("[a-z0-9]+", tag) for tag in FILE_TAGS.values())
    assert len(set(FILE_TAGS.values())) == len(FILE_TAGS)
    assert FILE_TAGS["gradcam++"] == "gradcampp" and FILE_TAGS["gradcam"] == "gradcam"


def test_unknown_method_fails_before_loading_anything(tmp_path, faces):
    with pytest.raises(ConfigError, match=re.escape("unknown explain method 'gradcam+'; did you mean 'gradcam++'")):
        explain(tmp_path / "missing", faces, method="gradcam+")


def test_ig_steps_below_two_fail_before_loading_anything(tmp_path, faces):
    with pytest.raises(ConfigError, match=re.escape("ig_steps is 1, but must be an integer >= 2")):
        explain(tmp_path / "missing", faces, method="ig", ig_steps=1)


def test_bundle_without_weights_says_explain_needs_them(explain_bundle, faces, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(explain_bundle, copy)
    shutil.rmtree(copy / "weights")
    # The graphs read their weights from these files: the bundle is incomplete, and says which file is gone.
    with pytest.raises(DataError, match=r"weights/.*fold_0\.safetensors: missing from the bundle"):
        explain(copy, faces, write=False)
    # A bundle written when graphs embedded their weights lists only the graph: explain names what it lacks.
    manifest = json.loads((copy / "manifest.json").read_text())
    for graph in manifest["graphs"].values():
        graph["files"] = [graph["file"]]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"explain needs the members' safetensors weights .*holds only ONNX graphs"):
        explain(copy, faces, write=False)


def test_not_a_bundle_or_run(tmp_path, faces):
    with pytest.raises(ConfigError, match="neither a bundle .* nor a run directory"):
        explain(tmp_path, faces)


def _cli(argv: list[str]) -> argparse.Namespace:
    from ferray.explain import _cli as explain_cli

    return parse_cli(explain_cli, argv)


def test_cli(explain_run, faces, tmp_path, capsys):
    img = tmp_path / "face.png"
    Image.fromarray(faces[0]).save(img)
    args = _cli(
        [
            "explain",
            str(explain_run),
            str(img),
            "--method",
            "layercam",
            "--target",
            "sad",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].endswith("target sad") and out[-1] == str(tmp_path / "out" / "grid.png")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["000_face_layercam.png", "grid.png"]
    args = _cli(["explain", str(explain_run), str(tmp_path / "nothing.png")])
    with pytest.raises(DataError, match="no such file"):
        args.func(args)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"x")
    args = _cli(["explain", str(explain_run), str(bad), "--out", str(tmp_path / "o2")])
    assert args.func(args) == 1
