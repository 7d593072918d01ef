from __future__ import annotations

import os

import numpy as np
import pytest
from _data_helpers import make_folder, write_image

from ferray.data import FER2013_CLASSES, check, load_source, prepare, read_parquet
from ferray.errors import DataError


def test_flat_class_folders_sorted(tmp_path):
    make_folder(tmp_path, {"b": 2, "a": 3}, np.random.default_rng(0))
    data = load_source(tmp_path)
    assert data.class_names == ("a", "b")
    assert data.class_counts().tolist() == [3, 2]
    assert set(data.splits) == {"train"}
    assert data.ids[0] == "a/000.png" and data.sources[0] == str(tmp_path / "a" / "000.png")
    assert data.image_shape == (8, 8, 1)


def test_fer2013_class_names_use_fer2013_order(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "PublicTest", "PrivateTest"):
        make_folder(tmp_path, {c.capitalize(): 1 for c in FER2013_CLASSES}, rng, split=split)
    data = load_source(tmp_path, size=4, channels=3)
    assert data.class_names == FER2013_CLASSES
    assert sorted(set(data.splits)) == ["test", "train", "val"]
    assert data.image_shape == (4, 4, 3)
    happy = data.ids[data.labels == FER2013_CLASSES.index("happy")]
    assert all("/Happy/" in i for i in happy)


@pytest.mark.parametrize("name, split", [("validation", "val"), ("Test", "test"), ("training", "train")])
def test_split_aliases(tmp_path, name, split):
    make_folder(tmp_path, {"x": 1, "y": 1}, np.random.default_rng(0), split=name)
    assert set(load_source(tmp_path).splits) == {split}


def test_empty_class_folder_is_named(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 1}, np.random.default_rng(0))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".DS_Store").write_text("x")
    with pytest.raises(DataError, match=r"class folder 'c' holds no images"):
        load_source(tmp_path)


def test_single_class(tmp_path):
    make_folder(tmp_path, {"only": 2}, np.random.default_rng(0))
    with pytest.raises(DataError, match=r"single class \['only'\]"):
        load_source(tmp_path)


def test_classes_differ_between_splits(tmp_path):
    rng = np.random.default_rng(0)
    make_folder(tmp_path, {"a": 1, "b": 1, "c": 1}, rng, split="train")
    make_folder(tmp_path, {"a": 1, "b": 1}, rng, split="test")
    with pytest.raises(DataError, match=r"split 'test' lacks class folder\(s\) \['c'\]"):
        load_source(tmp_path)


def test_junk_ignored_other_extensions_reported(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1}, np.random.default_rng(0))
    (tmp_path / "a" / ".DS_Store").write_text("x")
    (tmp_path / "a" / "Thumbs.db").write_text("x")
    (tmp_path / "b" / "face.gif").write_text("x")
    data = load_source(tmp_path)
    assert len(data) == 2
    assert len(data.warnings) == 1 and "face.gif" in data.warnings[0] and ".DS_Store" not in data.warnings[0]


def _with_truncated(tmp_path):
    rng = np.random.default_rng(0)
    make_folder(tmp_path, {"a": 2, "b": 2}, rng)
    bad = tmp_path / "b" / "bad.jpg"
    write_image(bad, rng, size=32, fmt="JPEG")
    bad.write_bytes(bad.read_bytes()[:200])
    return bad


def test_truncated_jpeg_listed_or_strict(tmp_path):
    bad = _with_truncated(tmp_path)
    data = load_source(tmp_path)
    assert len(data) == 4
    assert any(str(bad) in w for w in data.warnings)
    with pytest.raises(DataError, match=r"1 unreadable image\(s\) \(strict\): .*bad\.jpg"):
        load_source(tmp_path, strict=True)
    with pytest.raises(DataError, match="bad.jpg"):
        load_source(f"{tmp_path}?strict=true")


def test_check_reports_truncated_as_error(tmp_path):
    bad = _with_truncated(tmp_path)
    report = check(tmp_path)
    assert not report.ok
    assert any(str(bad) in e for e in report.errors)
    assert report.image_sizes == {"8x8": 4} and report.image_modes == {"L": 4}


def test_prepare_failure_leaves_nothing(tmp_path):
    _with_truncated(tmp_path / "src")
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError):
        prepare(tmp_path / "src", out, strict=True)
    assert not out.exists() and os.listdir(tmp_path) == ["src"]


def test_prepare_round_trip(tmp_path):
    make_folder(tmp_path / "src", {"a": 3, "b": 2}, np.random.default_rng(0))
    out = tmp_path / "prepared.parquet"
    data = prepare(tmp_path / "src", out, size=8, channels=3)
    back = read_parquet(out)
    assert back.images.dtype == np.uint8 and back.images.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(back.images, data.images)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.class_names == data.class_names and list(back.ids) == list(data.ids)
    assert back.splits.tolist() == data.splits.tolist() and back.sources.tolist() == data.sources.tolist()
    np.testing.assert_array_equal(load_source(out).images, data.images)
    with pytest.raises(DataError, match=r"prepared at 8x8x3, but size=16"):
        load_source(out, size=16)


@pytest.mark.shared_data
def test_real_fer2013_folder_subset(shared_data, tmp_path):
    """A symlinked subset of the real FER2013 folders: 20 images per class and split."""
    src = shared_data / "fer2013"
    for split in ("train", "test"):
        for cls in sorted(os.listdir(src / split)):
            (tmp_path / split / cls).mkdir(parents=True)
            for name in sorted(os.listdir(src / split / cls))[:20]:
                os.symlink(src / split / cls / name, tmp_path / split / cls / name)
    data = load_source(tmp_path)
    assert data.class_names == FER2013_CLASSES
    assert data.image_shape == (48, 48, 1)
    assert len(data) == 7 * 2 * 20 and not data.warnings
    assert data.class_counts("test").tolist() == [20] * 7
