from __future__ import annotations

import shutil

import numpy as np
import pytest
from _data_helpers import fer2013_csv

from ferray.data import FER2013_CLASSES, FERPLUS_CLASSES, check, load_source, prepare, read_parquet
from ferray.errors import DataError

VOTES_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def test_fer2013_csv(tmp_path):
    rows = [(0, "Training"), (3, "PublicTest"), (6, "PrivateTest")]
    pixels = fer2013_csv(tmp_path / "fer2013.csv", rows, np.random.default_rng(0))
    data = load_source(tmp_path / "fer2013.csv")
    assert data.class_names == FER2013_CLASSES
    np.testing.assert_array_equal(data.images, pixels)
    assert data.labels.tolist() == [0, 3, 6]
    assert data.splits.tolist() == ["train", "val", "test"]
    assert data.ids.tolist() == ["fer2013:0", "fer2013:1", "fer2013:2"]
    assert data.sources[1].endswith("fer2013.csv:3")
    assert load_source(tmp_path / "fer2013.csv", size=24, channels=3).image_shape == (24, 24, 3)


def _bad_csv(tmp_path, replace):
    path = tmp_path / "fer2013.csv"
    fer2013_csv(path, [(0, "Training")] * 3, np.random.default_rng(0))
    lines = path.read_text().splitlines()
    lines[2] = replace(lines[2])
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "replace, match",
    [
        (lambda line: "9" + line[1:], r"fer2013\.csv:3: emotion is '9', but must be an integer 0\.\.6"),
        (lambda line: line.replace(",Training", ",Train"), r"fer2013\.csv:3: Usage is 'Train'"),
        (lambda line: line + ",x", r"fer2013\.csv:3: expected 3 columns"),
        (lambda line: line.replace(" ", " 1 ", 1), r"fer2013\.csv:3: pixels must be 2304 .* found 2305 value"),
        (lambda line: line.replace(" ", " 2.5 ", 1), r"fer2013\.csv:3: pixels must be .*not all integers"),
        (lambda line: "0,300" + line[line.index(" ") :], r"fer2013\.csv:3: pixel value 300 is outside 0\.\.255"),
    ],
)
def test_fer2013_bad_rows_name_the_line(tmp_path, replace, match):
    with pytest.raises(DataError, match=match):
        load_source(_bad_csv(tmp_path, replace))


def test_unknown_csv_header(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"CSV header \['a', 'b'\] is not one ferray reads; accepted: FER2013"):
        load_source(tmp_path / "x.csv")


def _ferplus(tmp_path, votes):
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "Training"][: len(votes)]
    fer2013_csv(tmp_path / "fer2013.csv", [(0, u) for u in usages], np.random.default_rng(0))
    lines = [VOTES_HEADER] + [f"{u},{name},{','.join(map(str, v))}" for u, (name, v) in zip(usages, votes)]
    (tmp_path / "fer2013new.csv").write_text("\n".join(lines) + "\n")


VOTES = [
    ("fer0.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),
    ("", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # no image name: dropped
    ("fer2.png", [0, 1, 0, 0, 0, 0, 0, 0, 2, 7]),  # NF wins: dropped
    ("fer3.png", [0, 0, 0, 0, 0, 0, 0, 6, 4, 0]),  # contempt
    ("fer4.png", [2, 1, 1, 0, 1, 0, 0, 0, 0, 5]),
]


@pytest.mark.parametrize("how", ["dir", "images", "scheme"])
def test_ferplus(tmp_path, how):
    _ferplus(tmp_path, VOTES)
    source = {
        "dir": str(tmp_path),
        "images": f"{tmp_path / 'fer2013new.csv'}?images={tmp_path / 'fer2013.csv'}",
        "scheme": f"ferplus:{tmp_path / 'fer2013new.csv'}",
    }[how]
    data = load_source(source)
    assert data.class_names == FERPLUS_CLASSES
    assert data.ids.tolist() == ["fer2013:0", "fer2013:3"]
    assert data.labels.tolist() == [0, 7]
    np.testing.assert_allclose(data.soft_labels[0], [0.4, 0, 0, 0.1, 0.3, 0.2, 0, 0])
    assert data.splits.tolist() == ["train", "test"]
    assert "dropped 3 of 5 rows (1 without an image name" in data.warnings[0]


def test_ferplus_majority_mode(tmp_path):
    _ferplus(tmp_path, VOTES)
    data = load_source(tmp_path, mode="majority")
    # row 0: after dropping single votes 4,3,2 -> 4 is not > half of 9
    assert data.ids.tolist() == ["fer2013:3"]
    with pytest.raises(DataError, match=r"mode is 'mean', but must be one of \['plurality', 'majority'\]"):
        load_source(tmp_path, mode="mean")


def test_ferplus_row_counts_differ(tmp_path):
    _ferplus(tmp_path, VOTES)
    fer2013_csv(tmp_path / "fer2013.csv", [(0, "Training")] * 4, np.random.default_rng(0))
    with pytest.raises(DataError, match=r"fer2013new\.csv has 5 data rows but .*fer2013\.csv has 4"):
        load_source(tmp_path)


def test_ferplus_usage_disagrees(tmp_path):
    _ferplus(tmp_path, VOTES)
    text = (tmp_path / "fer2013new.csv").read_text().replace("PublicTest", "Training")
    (tmp_path / "fer2013new.csv").write_text(text)
    with pytest.raises(DataError, match=r"fer2013new\.csv:4: Usage 'Training' disagrees with .*fer2013\.csv:4"):
        load_source(tmp_path)


def test_unknown_option_lists_valid(tmp_path):
    _ferplus(tmp_path, VOTES)
    with pytest.raises(
        DataError, match=r"option 'imgs' is not accepted by a ferplus source .*valid options: channels, images, mode"
    ):
        load_source(f"{tmp_path}?imgs=x")


@pytest.mark.shared_data
def test_real_fer2013_csv_subset(shared_data, tmp_path):
    csv = shared_data / "fer2013_csv_subset" / "fer2013_first1167.csv"
    out = tmp_path / "fer.parquet"
    data = prepare(csv, out)
    assert len(data) == 1167 and data.image_shape == (48, 48, 1)
    assert data.labels[:3].tolist() == [0, 0, 2]
    back = read_parquet(out)
    np.testing.assert_array_equal(back.images, data.images)
    assert back.images.dtype == np.uint8 and back.images.shape == (1167, 48, 48, 1)
    assert back.ids.tolist() == data.ids.tolist()


@pytest.mark.shared_data
def test_real_ferplus_on_csv_subset(shared_data, tmp_path):
    votes = (shared_data / "ferplus_labels" / "fer2013new.csv").read_text().splitlines(keepends=True)
    (tmp_path / "fer2013new.csv").write_text("".join(votes[:1168]))
    shutil.copy(shared_data / "fer2013_csv_subset" / "fer2013_first1167.csv", tmp_path / "fer2013.csv")
    out = tmp_path / "ferplus.parquet"
    data = prepare(tmp_path, out)
    assert 1100 < len(data) < 1167 and "dropped" in data.warnings[0]
    assert data.ids[0] == "fer2013:0"
    np.testing.assert_allclose(data.soft_labels.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(data.soft_labels[0], [0.4, 0, 0, 0.1, 0.3, 0.2, 0, 0], rtol=1e-6)
    back = read_parquet(out)
    np.testing.assert_array_equal(back.soft_labels, data.soft_labels)
    np.testing.assert_array_equal(back.images, data.images)
    # the whole votes file against the 1,167-row CSV: counts differ
    with pytest.raises(DataError, match=r"has 35887 data rows but .* has 1167"):
        load_source(shared_data / "ferplus_labels" / "fer2013new.csv", images=tmp_path / "fer2013.csv")


@pytest.mark.shared_data
def test_real_csv_check(shared_data):
    report = check(shared_data / "fer2013_csv_subset" / "fer2013_first1167.csv")
    assert report.ok and report.rows == {"train": 1167, "all": 1167}
    assert report.exact_duplicates["groups"] >= 1
    assert report.to_dict()["class_counts"]["train"]["disgust"] == 14
