"""Class names mapped onto the canonical taxonomies, and the classes of two datasets matched by them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _data_helpers import make_folder

from ferray.data import (
    FER2013_CLASSES,
    FERPLUS_CLASSES,
    RAFCE_CLASSES,
    RAFDB_CLASSES,
    TAXONOMIES,
    canonical_class,
    check,
    load_source,
    map_class_names,
    match_classes,
    prepare,
    read_parquet,
    remap_labels,
)
from ferray.errors import DataError


@pytest.mark.parametrize(
    "name, concept",
    [
        ("1 - Happy", "happy"),
        ("happiness", "happy"),
        ("Joy", "happy"),
        ("anger", "angry"),
        ("ANGRY", "angry"),
        ("sadness", "sad"),
        ("03_sad", "sad"),
        ("(4) Fearful", "fear"),
        ("afraid", "fear"),
        ("disgusted", "disgust"),
        ("Surprised", "surprise"),
        ("contempt", "contempt"),
        ("Neutral", "neutral"),
        ("happily surprised", "happily_surprised"),
        ("Happily_Disgusted", "happily_disgusted"),
        ("surprised-happy", "happily_surprised"),
        ("sadly angry", "sadly_angry"),
        ("7", None),
        ("happily", None),
        ("cat", None),
        ("happy sad angry", None),
    ],
)
def test_canonical_class(name, concept):
    assert canonical_class(name) == concept


@pytest.mark.parametrize(
    "names", [FER2013_CLASSES, FERPLUS_CLASSES, RAFCE_CLASSES, RAFDB_CLASSES, *TAXONOMIES.values()]
)
def test_every_builtin_class_list_is_canonical(names):
    assert all(canonical_class(n) is not None for n in names)


@pytest.mark.parametrize(
    "folders, classes, taxonomy",
    [
        (["1 - Happy", "2 - Sad", "3 - Angry"], ("angry", "happy", "sad"), "basic7"),
        (["Surprised", "anger", "sadness", "Neutral"], ("angry", "sad", "surprise", "neutral"), "basic7"),
        # CK+: contempt (and no neutral) takes basic8's order and spelling
        (
            ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"],
            ("happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
            "basic8",
        ),
        (
            ["Happily surprised", "Sadly angry", "happily sad"],
            ("happily_surprised", "sadly_angry", "happily_sad"),
            "compound14",
        ),
    ],
)
def test_map_class_names_canonical_order_and_spelling(folders, classes, taxonomy):
    m = map_class_names(folders)
    assert m.class_names == classes and m.taxonomy == taxonomy and m.unknown == ()
    assert sorted(m.index) == sorted(folders)
    assert all(m.class_names[m.index[o]] == c for o, c in zip(m.original, m.class_names))


def test_unknown_names_are_kept_after_known_ones():
    m = map_class_names(["happy", "Other", "sad", "blur"])
    assert m.class_names == ("happy", "sad", "Other", "blur")
    assert m.unknown == ("Other", "blur") and m.renamed == {}


@pytest.mark.parametrize(
    "folders, classes, message",
    [
        (["anger", "angry", "happy"], None, r"class names \['anger', 'angry'\] all map to class 'angry'"),
        (["a", "b"], {"a": "happy", "b": "happiness"}, r"\['a', 'b'\] all map to class 'happy'"),
        (["anger", "contempt"], "basic7", r"\['contempt'\] do not map onto classes=basic7 \['angry', 'disgust'"),
        (["happy", "sad"], {"hapy": "happy"}, r"names \['hapy'\].*did you mean 'happy'"),
        (
            ["happy", "sad"],
            "basic9",
            r"classes='basic9' is not accepted: use one of .*did you mean 'basic8' or 'basic7'",
        ),
    ],
)
def test_bad_mappings_are_clear_errors(folders, classes, message):
    with pytest.raises(DataError, match=message):
        map_class_names(folders, classes)


def test_folder_dataset_maps_names_and_keeps_the_originals(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    make_folder(root, {"1 - Happy": 2, "2 - Sad": 3, "Surprised": 1}, rng, split="train")
    make_folder(root, {"1 - Happy": 1, "2 - Sad": 1, "Surprised": 1}, rng, split="test")
    data = load_source(root)
    assert data.class_names == ("happy", "sad", "surprise")
    assert data.original_class_names == ("1 - Happy", "2 - Sad", "Surprised")
    assert data.class_counts("train").tolist() == [2, 3, 1]
    assert all("/1 - Happy/" in i for i in data.ids[data.labels == 0])
    prepare(root, tmp_path / "out.parquet")
    back = read_parquet(tmp_path / "out.parquet")
    assert back.class_names == data.class_names and back.original_class_names == data.original_class_names
    assert back.fingerprint() == data.fingerprint()
    report = check(root)
    assert report.classes["renamed"] == {"1 - Happy": "happy", "2 - Sad": "sad", "Surprised": "surprise"}
    assert "class names mapped: '1 - Happy' -> 'happy'" in report.render(rich=False)
    # verbatim keeps the folder names (sorted)
    verbatim = load_source(f"{root}?classes=verbatim")
    assert verbatim.class_names == ("1 - Happy", "2 - Sad", "Surprised")
    # unchanged names store no original names, so fingerprints stay as they were
    assert verbatim.original_class_names is None


def test_partly_unknown_folders_warn(tmp_path):
    make_folder(tmp_path, {"happy": 1, "sad": 1, "meh": 1}, np.random.default_rng(0))
    data = load_source(tmp_path)
    assert data.class_names == ("happy", "sad", "meh")
    assert any("['meh'] match no canonical emotion" in w for w in data.warnings)
    assert check(tmp_path).classes["unknown"] == ["meh"]
    # folders that are no emotion at all stay as they were, without a word
    make_folder(tmp_path / "other", {"b": 1, "a": 1}, np.random.default_rng(0))
    plain = load_source(tmp_path / "other")
    assert plain.class_names == ("a", "b") and not plain.warnings


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".csv"])
def test_mapping_file_overrides(tmp_path, suffix):
    make_folder(tmp_path / "data", {"AN": 1, "HA": 2, "XX": 1}, np.random.default_rng(0))
    mapping = {"AN": "anger", "HA": "Happy", "XX": "contempt"}
    path = tmp_path / f"map{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(mapping))
    elif suffix == ".yaml":
        path.write_text("".join(f"{k}: {v}\n" for k, v in mapping.items()))
    else:
        path.write_text("# folder,class\n" + "".join(f"{k},{v}\n" for k, v in mapping.items()))
    data = load_source(tmp_path / "data", classes=str(path))
    assert data.class_names == ("happiness", "anger", "contempt")
    assert data.original_class_names == ("HA", "AN", "XX")
    assert data.class_counts().tolist() == [2, 1, 1]


def test_taxonomy_option_and_missing_mapping_file(tmp_path):
    make_folder(tmp_path, {"anger": 1, "happy": 1}, np.random.default_rng(0))
    assert load_source(tmp_path, classes="basic8").class_names == ("happiness", "anger")
    with pytest.raises(DataError, match=r"classes='nope/map.json': no such mapping file"):
        load_source(tmp_path, classes="nope/map.json")
    bad = tmp_path / "bad.csv"
    bad.write_text("anger\n")
    with pytest.raises(DataError, match=r"bad\.csv:1: expected 'folder name,class name'"):
        load_source(tmp_path, classes=str(bad))


# -- classes of two datasets matched by canonical name (cross-dataset evaluation's first step) --------
# The scores of a model on the matched rows are tested in tests/report/test_cross_dataset.py; their
# bootstrap intervals in tests/metrics/test_bootstrap.py.


def test_match_classes_between_public_sets():
    mapping, unknown = match_classes(FER2013_CLASSES, FERPLUS_CLASSES)
    assert unknown == ["contempt"]
    assert mapping == {
        "neutral": "neutral",
        "happiness": "happy",
        "surprise": "surprise",
        "sadness": "sad",
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fear",
    }
    mapping, unknown = match_classes(FERPLUS_CLASSES, RAFDB_CLASSES)
    assert unknown == [] and mapping["happiness"] == "happiness" and mapping["anger"] == "anger"
    mapping, unknown = match_classes(["1 - Happy", "2 - Sad"], ["SAD", "Happily surprised", "blur"])
    assert mapping == {"SAD": "2 - Sad"} and unknown == ["Happily surprised", "blur"]


def test_match_classes_errors_name_both_sides():
    with pytest.raises(DataError, match=r"the data's classes \['contempt'\] share no class with the model's \['angry'"):
        match_classes(["angry", "happy"], ["contempt"])
    with pytest.raises(DataError, match=r"model classes .* ambiguous: 'anger' and 'angry' both mean 'angry'"):
        match_classes(["anger", "angry"], ["angry"])


def test_remap_labels_marks_missing_classes():
    labels = np.array([0, 7, 1, 4])  # FER+: neutral, contempt, happiness, anger
    assert remap_labels(labels, FERPLUS_CLASSES, FER2013_CLASSES).tolist() == [6, -1, 3, 0]
