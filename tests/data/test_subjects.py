"""Subject ids from file names: naming schemes, ``subject=REGEX``, label columns."""

from __future__ import annotations

import numpy as np
import pytest
from _fer_layouts import scheme_folder, straddling

from ferray.data import SUBJECT_SCHEMES, check, detect_subjects, load_source, plan_folds
from ferray.errors import DataError


@pytest.mark.parametrize("scheme", ["ck+", "jaffe", "kdef", "s-prefix"])
def test_naming_schemes_give_subjects_and_subject_folds(tmp_path, scheme):
    expected = scheme_folder(tmp_path, scheme, subjects=6)
    data = load_source(tmp_path)
    assert dict(zip(data.ids.tolist(), data.subjects.tolist())) == expected
    report = check(tmp_path)
    assert report.subjects["scheme"] == scheme and report.subjects["count"] == 6
    assert "subjects: file names" in report.render(rich=False)
    plan = plan_folds(data, 3, seed=0)
    assert plan.grouped
    assert straddling(data.subjects, plan.fold) == []


@pytest.mark.parametrize(
    "name, scheme, subject",
    [
        ("S010_004_00000017.png", "ck+", "S010"),
        ("KA.HA1.29.tiff", "jaffe", "KA"),
        ("AF01ANS.JPG", "kdef", "F01"),
        ("bm23sahr.jpg", "kdef", "M23"),
        ("S005_001.jpeg", "s-prefix", "S005"),
        ("S12-anger.png", "s-prefix", "S12"),
    ],
)
def test_each_scheme_reads_its_example(name, scheme, subject):
    found, subjects, _ = detect_subjects([name])
    assert found.name == scheme and subjects.tolist() == [subject]
    assert {s.name for s in SUBJECT_SCHEMES} == {"ck+", "jaffe", "kdef", "s-prefix"}


def test_a_scheme_is_applied_only_when_it_fits_every_file(tmp_path):
    scheme_folder(tmp_path, "ck+", subjects=3)
    (tmp_path / "anger" / "S010_001_00000015.png").rename(tmp_path / "anger" / "odd.png")
    data = load_source(tmp_path)
    assert data.subjects is None
    report = check(tmp_path)
    assert report.subjects["from"] is None
    total = report.rows["all"]
    assert report.subjects["partial"]["ck+"] == total - 1
    text = report.render(rich=False)
    assert "subjects: none" in text and f"ck+ fits {total - 1} of {total} files only" in text


def test_no_scheme_no_subjects_and_subject_none_turns_them_off(tmp_path):
    scheme_folder(tmp_path / "plain", "plain", subjects=2)
    assert load_source(tmp_path / "plain").subjects is None
    assert check(tmp_path / "plain").subjects == {"from": None, "partial": {}}
    scheme_folder(tmp_path / "ck", "ck+", subjects=2)
    assert load_source(f"{tmp_path / 'ck'}?subject=none").subjects is None


def test_subject_regex_on_file_names_and_relative_paths(tmp_path):
    expected = scheme_folder(tmp_path, "plain", subjects=4)
    # '+' in a query string stays a plus (not a space)
    data = load_source(rf"{tmp_path}?subject=^img_(\d+)_")
    assert dict(zip(data.ids.tolist(), data.subjects.tolist())) == expected
    assert check(tmp_path, subject=r"^img_(\d+)_").subjects == {"from": r"subject=^img_(\d+)_", "count": 4}
    # with a '/', the pattern is searched in the path relative to the root: here the class folder
    by_folder = load_source(tmp_path, subject=r"^([a-z]+)/")
    assert set(by_folder.subjects.tolist()) == {"anger", "happy", "sadness", "surprise"}


@pytest.mark.parametrize(
    "pattern, message",
    [
        (r"^zzz(\d+)", r"matched none of 72 file names"),
        (r"^img_(0[01])_", r"matched 24 of 72 file names .*unmatched e\.g\. \['img_02"),
        (r"^img_\d+", r"has no group: put the subject in parentheses"),
        (r"^img_(\d+", r"is not a valid regular expression"),
    ],
)
def test_bad_subject_regex_is_a_clear_error(tmp_path, pattern, message):
    scheme_folder(tmp_path, "plain", subjects=6)
    with pytest.raises(DataError, match=message):
        load_source(tmp_path, subject=pattern)
    with pytest.raises(DataError, match=r"option 'subject' is not accepted by a fer2013 source"):
        load_source("fer2013:" + str(tmp_path), subject="x")


def test_fer2013_csv_subject_column(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage,subject"]
    for i in range(12):
        pixels = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        lines.append(f"{i % 2},{pixels},{'PrivateTest' if i >= 10 else 'Training'},p{i // 3}")
    path = tmp_path / "faces.csv"
    path.write_text("\n".join(lines) + "\n")
    data = load_source(path)
    assert data.subjects.tolist() == [f"p{i // 3}" for i in range(12)]
    assert check(path).subjects == {"from": "column 'subject' of faces.csv", "count": 4}
    plan = plan_folds(data, 2, holdout="none")
    assert straddling(data.subjects, plan.fold) == []
    lines[3] = lines[3].rsplit(",", 1)[0] + ","
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"faces\.csv:4: the subject column is empty"):
        load_source(path)


@pytest.mark.shared_data
def test_real_fer2013_names_carry_no_subject(fer2013_subset):
    report = check(fer2013_subset)
    assert report.ok and report.subjects == {"from": None, "partial": {}}


def test_subject_folders_inside_class_folders(tmp_path):
    """Oulu-CASIA style: anger/P001/000.jpeg; the regex has a '/', so it reads the relative path."""
    from _data_helpers import write_image

    rng = np.random.default_rng(0)
    for cls in ("anger", "happy"):
        for person in ("P001", "P002", "P003"):
            for frame in range(2):
                write_image(tmp_path / cls / person / f"{frame:03d}.jpeg", rng, fmt="JPEG")
    data = load_source(f"{tmp_path}?subject=/(P\\d+)/")
    assert data.subjects.tolist() == [i.split("/")[1] for i in data.ids]
    assert set(data.subjects.tolist()) == {"P001", "P002", "P003"}
    assert load_source(tmp_path).subjects is None  # 000.jpeg carries no subject
