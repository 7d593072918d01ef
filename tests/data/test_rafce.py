from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from ferray.data import AU_IDS, RAFCE_CLASSES, RAFDB_CLASSES, load_source, parse_au_tokens, prepare, read_parquet
from ferray.errors import DataError


def _aus(vec):
    return [au for au, on in zip(AU_IDS, vec) if on]


@pytest.mark.parametrize(
    "text, aus, unknown, bad",
    [
        ("1+4+25", [1, 4, 25], [], []),
        ("L12+24", [12, 24], [], []),
        ("null", [], [], []),
        ("", [], [], []),
        ("R2+B22+t23+RB18", [2, 23], [22, 18], []),
        ("4+AD19+L12L", [4], [], ["AD19", "L12L"]),
        ("45+43", [43, 45], [], []),
    ],
)
def test_parse_au_tokens(text, aus, unknown, bad):
    vec, got_unknown, got_bad = parse_au_tokens(text)
    assert vec.dtype == np.uint8 and vec.shape == (18,)
    assert (_aus(vec), got_unknown, got_bad) == (aus, unknown, bad)


def _png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 6, 3), np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def _rafce(root, rows, images="aligned", suffix="_aligned"):
    """rows: (id, partition, label, aus)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "RAFCE_partition.txt").write_text("".join(f"{i} {p}\n" for i, p, _, _ in rows))
    (root / "RAFCE_emolabel.txt").write_text("".join(f"{i} {e}\n" for i, _, e, _ in rows))
    (root / "RAFCE_AUlabel.txt").write_text("".join(f"{i} {a}\n" for i, _, _, a in rows))
    if images is not None:
        (root / images).mkdir(parents=True, exist_ok=True)
        for k, (i, *_rest) in enumerate(rows):
            stem, ext = i.rsplit(".", 1)
            (root / images / f"{stem}{suffix}.{ext}").write_bytes(_png_bytes(k))


ROWS = [("0001.jpg", 0, 5, "1+4+25"), ("0002.jpg", 2, 13, "null"), ("0003.jpg", 1, 10, "L12+24+27+AD19")]


@pytest.mark.parametrize("images, suffix", [("aligned", "_aligned"), ("Image/aligned", ""), (".", "")])
def test_rafce_folder(tmp_path, images, suffix):
    _rafce(tmp_path, ROWS, images, suffix)
    data = load_source(tmp_path)
    assert data.class_names == RAFCE_CLASSES and data.class_names[5] == "sadly_disgusted"
    assert data.ids.tolist() == ["0001.jpg", "0002.jpg", "0003.jpg"]
    assert data.splits.tolist() == ["train", "val", "test"]
    assert data.labels.tolist() == [5, 13, 10]
    assert [_aus(v) for v in data.aus] == [[1, 4, 25], [], [12, 24]]
    assert data.image_shape == (6, 6, 3)
    text = "\n".join(data.warnings)
    assert "AU27 x1 (e.g. " in text and "RAFCE_AUlabel.txt:3" in text and "'AD19'" in text
    with pytest.raises(DataError, match=r"RAFCE_AUlabel\.txt:3: 'AD19'"):
        load_source(tmp_path, strict=True)


def test_missing_image_names_file_line_id(tmp_path):
    _rafce(tmp_path, ROWS)
    (tmp_path / "aligned" / "0002_aligned.jpg").unlink()
    with pytest.raises(DataError, match=r"RAFCE_partition\.txt:2: no image for id '0002\.jpg' \(1 of 3"):
        load_source(tmp_path)


def test_duplicate_id(tmp_path):
    _rafce(tmp_path, ROWS)
    with open(tmp_path / "RAFCE_emolabel.txt", "a") as fh:
        fh.write("0001.jpg 3\n")
    with pytest.raises(DataError, match=r"RAFCE_emolabel\.txt:4: id '0001\.jpg' repeats line 1"):
        load_source(tmp_path)


def test_ids_differ_between_files(tmp_path):
    _rafce(tmp_path, ROWS)
    (tmp_path / "RAFCE_AUlabel.txt").write_text("0001.jpg 1\n0002.jpg 2\n0004.jpg 4\n")
    with pytest.raises(
        DataError, match=r"list different ids: 1 only in RAFCE_partition\.txt \(e\.g\. \['0003\.jpg'\]\)"
    ):
        load_source(tmp_path)


@pytest.mark.parametrize("label", ["14", "-1", "x"])
def test_emotion_out_of_range(tmp_path, label):
    _rafce(tmp_path, [*ROWS[:2], ("0003.jpg", 1, label, "null")])
    with pytest.raises(
        DataError, match=rf"RAFCE_emolabel\.txt:3: emotion label '{label}' for '0003\.jpg' must be an integer 0\.\.13"
    ):
        load_source(tmp_path)


def test_rafdb_basic(tmp_path):
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    rows = [("train_00001.jpg", 5), ("train_00002.jpg", 1), ("test_0001.jpg", 7)]
    (tmp_path / "list_patition_label.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
    for k, (i, _) in enumerate(rows):
        (tmp_path / "Image" / "aligned" / i.replace(".jpg", "_aligned.jpg")).write_bytes(_png_bytes(k))
    data = load_source(tmp_path)
    assert data.class_names == RAFDB_CLASSES
    assert data.labels.tolist() == [4, 0, 6] and data.splits.tolist() == ["train", "train", "test"]


@pytest.fixture(scope="module")
def real_rafce(shared_data, tmp_path_factory):
    """The real RAF-CE label files with a placeholder image for every id."""
    root = tmp_path_factory.mktemp("rafce")
    for name in ("RAFCE_partition.txt", "RAFCE_emolabel.txt", "RAFCE_AUlabel.txt"):
        shutil.copy(shared_data / "rafce_labels" / name, root / name)
    (root / "aligned").mkdir()
    blob = _png_bytes()
    for line in (root / "RAFCE_partition.txt").read_text().splitlines():
        stem = line.split()[0].rsplit(".", 1)[0]
        (root / "aligned" / f"{stem}_aligned.jpg").write_bytes(blob)
    return root


@pytest.mark.shared_data
def test_real_rafce_labels(real_rafce, tmp_path):
    data = prepare(real_rafce, tmp_path / "rafce.parquet", size=6, workers=1)
    assert len(data) == 4549 and data.class_names == RAFCE_CLASSES
    assert data.class_counts().tolist() == [676, 279, 171, 230, 120, 835, 195, 603, 36, 210, 977, 177, 11, 29]
    assert {s: int((data.splits == s).sum()) for s in ("train", "val", "test")} == {
        "train": 2709,
        "val": 931,
        "test": 909,
    }
    nonzero = (data.aus.sum(axis=1) > 0).mean()
    assert nonzero > 0.9, f"only {nonzero:.0%} of rows have AUs: parser broken?"
    by_id = dict(zip(data.ids, data.aus))
    assert _aus(by_id["0001.jpg"]) == [1, 4, 25]
    assert _aus(by_id["0002.jpg"]) == [4, 9, 12, 25, 26, 43]
    assert _aus(by_id["0003.jpg"]) == [12, 24]
    assert not by_id["0004.jpg"].any()  # null
    assert data.aus[:, AU_IDS.index(45)].sum() == 0  # AU45 never occurs in RAF-CE
    warned = "\n".join(data.warnings)
    assert "AU27 x790" in warned and "outside the 18" in warned
    assert "'AD19'" in warned and "'L12L'" in warned
    back = read_parquet(tmp_path / "rafce.parquet")
    np.testing.assert_array_equal(back.aus, data.aus)
    np.testing.assert_array_equal(back.labels, data.labels)
