"""predict(): inputs (image, folder, CSV, array), preprocessing parity with training, TTA, faces, writers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _export_helpers import CLASSES, torch_ensemble_probs, torch_member_probs
from _fer_faces import fer_faces
from PIL import Image

from ferray.errors import DataError
from ferray.imaging import decode_image
from ferray.predict import (
    Bundle,
    Predictions,
    format_table,
    predict,
    write_csv,
    write_json,
)


def _image(rng, h, w, mode):
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    if mode == "RGB":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert("P")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    raise ValueError(mode)


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A folder tree of images in several formats and modes, and one broken file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    _image(rng, 48, 48, "L").save(root / "a.png")
    _image(rng, 120, 90, "RGB").save(root / "b.jpg", quality=90)
    _image(rng, 64, 64, "RGBA").save(root / "sub" / "c.png")
    _image(rng, 30, 30, "P").save(root / "sub" / "d.bmp")
    _image(rng, 50, 40, "I;16").save(root / "sub" / "deeper" / "e.tif")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_unreadable_listed_rest_predicted(greedy_bundle, photo_folder):
    preds = predict(greedy_bundle["bundle"], photo_folder, batch_size=2, progress=False)
    assert isinstance(preds, Predictions)
    names = [Path(p.source).relative_to(photo_folder).as_posix() for p in preds]
    assert names == ["a.png", "b.jpg", "sub/c.png", "sub/d.bmp", "sub/deeper/e.tif"]
    assert [Path(s.source).name for s in preds.skipped] == ["broken.jpg"]
    assert "broken.jpg: unreadable image" in preds.skipped[0].reason
    assert preds.classes == CLASSES and preds.model == "ensemble" and not preds.tta
    # the same probabilities as the PyTorch ensemble on training's decoding of the same files
    arrays = np.stack([decode_image(p.source, size=48, channels=1) for p in preds])
    expected = torch_ensemble_probs(greedy_bundle, arrays)
    assert np.abs(preds.probs() - expected).max() <= 1e-4
    top = preds[0]
    assert top.label == CLASSES[int(expected[0].argmax())] and top.score == pytest.approx(expected[0].max(), abs=1e-4)
    assert top.face is None and top.box is None
    assert sum(top.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_batch_size_does_not_change_results(greedy_bundle, photo_folder):
    a = predict(greedy_bundle["bundle"], photo_folder, batch_size=1, progress=False)
    b = predict(greedy_bundle["bundle"], photo_folder, batch_size=64, progress=False)
    np.testing.assert_allclose(a.probs(), b.probs(), atol=1e-6)


def test_single_image_list_and_array(greedy_bundle, photo_folder):
    bundle = Bundle.load(greedy_bundle["bundle"])
    one = predict(bundle, photo_folder / "a.png", progress=False)
    listed = predict(bundle, [photo_folder / "a.png", photo_folder / "missing.png"], progress=False)
    arr = np.asarray(Image.open(photo_folder / "a.png"))
    from_array = predict(bundle, arr[None], progress=False)
    assert len(one) == 1 and len(listed) == 1 and listed.skipped[0].source.endswith("missing.png")
    np.testing.assert_allclose(one.probs(), from_array.probs(), atol=1e-6)
    assert from_array[0].source == "array[0]"


def test_student(greedy_bundle):
    images = np.random.default_rng(5).integers(0, 256, (4, 48, 48, 1), dtype=np.uint8)
    preds = predict(greedy_bundle["bundle"], images, student=True, progress=False)
    assert preds.model == "student"
    assert np.abs(preds.probs() - torch_member_probs(greedy_bundle["student"], images)).max() <= 1e-4


def test_tta_is_mean_with_mirror(greedy_bundle):
    images = np.random.default_rng(6).integers(0, 256, (3, 48, 48, 1), dtype=np.uint8)
    plain = predict(greedy_bundle["bundle"], images, progress=False).probs()
    mirror = predict(greedy_bundle["bundle"], images[:, :, ::-1].copy(), progress=False).probs()
    tta = predict(greedy_bundle["bundle"], images, tta=True, progress=False)
    assert tta.tta
    np.testing.assert_allclose(tta.probs(), (plain + mirror) / 2, atol=1e-6)


def test_csv_of_paths_and_of_pixels(greedy_bundle, photo_folder, tmp_path):
    paths_csv = photo_folder / "list.csv"
    paths_csv.write_text("path,label\na.png,happy\nsub/c.png,sad\n,x\nsub/broken.jpg,x\n")
    preds = predict(greedy_bundle["bundle"], paths_csv, progress=False)
    assert [p.source for p in preds] == ["a.png", "sub/c.png"]
    assert [s.source for s in preds.skipped] == [f"{paths_csv}:4", "sub/broken.jpg"]
    rng = np.random.default_rng(2)
    rows = [rng.integers(0, 256, 48 * 48) for _ in range(3)]
    pixels_csv = tmp_path / "fer.csv"
    with open(pixels_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for r in rows:
            w.writerow([0, " ".join(map(str, r)), "PrivateTest"])
        w.writerow([0, "1 2 3", "PrivateTest"])
    preds = predict(greedy_bundle["bundle"], pixels_csv, progress=False)
    assert [p.source for p in preds] == [f"{pixels_csv}:2", f"{pixels_csv}:3", f"{pixels_csv}:4"]
    assert preds.skipped[0].source == f"{pixels_csv}:5" and "3 pixel value(s)" in preds.skipped[0].reason
    images = np.stack([r.astype(np.uint8).reshape(48, 48, 1) for r in rows])
    assert np.abs(preds.probs() - torch_ensemble_probs(greedy_bundle, images)).max() <= 1e-4
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.png,1\n")
    with pytest.raises(DataError, match=r"bad\.csv:1: header \['file', 'label'\] has neither a 'path' column"):
        predict(greedy_bundle["bundle"], bad, progress=False)


def test_bad_inputs(greedy_bundle, tmp_path):
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        predict(greedy_bundle["bundle"], tmp_path / "nowhere", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images \(\.jpg"):
        predict(greedy_bundle["bundle"], tmp_path / "empty", progress=False)
    with pytest.raises(DataError, match="batch_size is 0, but must be an integer >= 1"):
        predict(greedy_bundle["bundle"], tmp_path, batch_size=0, progress=False)


def test_faces_with_a_given_detector(greedy_bundle, tmp_path):
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "group.png")
    Image.fromarray(np.full((100, 100), 90, np.uint8)).save(tmp_path / "wall.png")
    boxes = [(10, 20, 60, 60), (150, 40, 80, 80)]

    def detector(gray):
        return boxes if gray.shape == (200, 300) else []

    preds = predict(greedy_bundle["bundle"], tmp_path, faces=detector, progress=False)
    assert [(Path(p.source).name, p.face, p.box) for p in preds] == [
        ("group.png", 0, boxes[0]),
        ("group.png", 1, boxes[1]),
    ]
    assert [(Path(s.source).name, s.reason) for s in preds.skipped] == [("wall.png", "no face found")]
    crops = np.stack(
        [
            np.asarray(
                Image.fromarray(photo)
                .crop((x, y, x + w, y + h))
                .resize((48, 48), Image.Resampling.BILINEAR, reducing_gap=2.0)
            )[:, :, None]
            for x, y, w, h in boxes
        ]
    )
    assert np.abs(preds.probs() - torch_ensemble_probs(greedy_bundle, crops)).max() <= 1e-4


def test_faces_with_opencv_haar_finds_no_face_on_a_plain_photo(greedy_bundle, tmp_path):
    """The real Haar path runs (OpenCV < 5); with OpenCV 5 (no CascadeClassifier) the error says what to install."""
    import cv2

    Image.new("RGB", (320, 240), (40, 140, 90)).save(tmp_path / "no_face.png")
    if not hasattr(cv2, "CascadeClassifier"):
        with pytest.raises(DataError, match=r"--faces needs OpenCV's Haar cascade detector .*opencv-python-headless"):
            predict(greedy_bundle["bundle"], tmp_path, faces=True, progress=False)
        pytest.skip(f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5); the error path was checked")
    preds = predict(greedy_bundle["bundle"], tmp_path / "no_face.png", faces=True, progress=False)
    assert len(preds) == 0 and preds.skipped[0].reason == "no face found"


def test_faces_with_opencv_haar_finds_real_faces(greedy_bundle, shared_data, tmp_path):
    """Four real FER2013 faces, upscaled and pasted apart on a plain photo: the cascade finds most of them.

    FER2013 crops are tight (no hair or chin margin), so the cascade misses some; with
    OpenCV 4.x it finds 3 of these 4. A detector that finds none, or boxes off the faces, fails.
    """
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip(f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5)")
    side, tiles = 120, [(20 + i * 155, 60) for i in range(4)]
    canvas = Image.new("L", (640, 240), 128)
    for face, xy in zip(fer_faces(shared_data, len(tiles)), tiles):
        canvas.paste(face.resize((side, side), Image.Resampling.BILINEAR), xy)
    canvas.save(tmp_path / "group.png")
    preds = predict(greedy_bundle["bundle"], tmp_path / "group.png", faces=True, progress=False)
    assert not preds.skipped
    assert len(preds) >= len(tiles) // 2, [p.box for p in preds]
    assert [p.face for p in preds] == list(range(len(preds)))
    found = set()
    for p in preds:  # every box is centred on a pasted face, a different face each time
        x, y, w, h = p.box
        cx, cy = x + w / 2, y + h / 2
        hits = [i for i, (tx, ty) in enumerate(tiles) if tx <= cx < tx + side and ty <= cy < ty + side]
        assert len(hits) == 1 and hits[0] not in found, (p.box, tiles)
        assert side / 2 <= w <= 2 * side and p.label in CLASSES
        found.add(hits[0])
    assert np.allclose(preds.probs().sum(1), 1.0, atol=1e-5)


def test_writers(greedy_bundle, photo_folder, tmp_path):
    preds = predict(greedy_bundle["bundle"], photo_folder, tta=True, progress=False)
    write_csv(preds, tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["source", "face", "x", "y", "w", "h", "label", "score"] + [
        f"prob_{c}" for c in CLASSES
    ] + ["temperature", "error"]
    assert rows[0]["temperature"] == "1" and rows[-1]["temperature"] == ""  # the shared bundle stores T = 1
    assert len(rows) == 6 and rows[-1]["label"] == "" and "unreadable image" in rows[-1]["error"]
    assert float(rows[0]["prob_happy"]) == pytest.approx(preds[0].probs["happy"], abs=1e-6)
    write_json(preds, tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["classes"] == CLASSES and doc["tta"] is True and doc["model"] == "ensemble"
    assert doc["calibrated"] is True and doc["temperature"] == 1.0 and doc["calibration"].startswith("T = 1: no out-of")
    assert len(doc["predictions"]) == 5 and doc["skipped"][0]["source"].endswith("broken.jpg")
    assert doc["predictions"][0]["probs"] == preds[0].probs
    table = format_table(preds)
    assert table.splitlines()[0].split() == ["source", "face", "label", "score"] + CLASSES
    assert len(table.splitlines()) == 6
