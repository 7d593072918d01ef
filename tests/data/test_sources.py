from __future__ import annotations

import numpy as np
import pytest
from _data_helpers import make_folder

from ferray.data import SOURCE_KINDS, load_source, prepare, read_parquet
from ferray.errors import DataError


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file or directory"):
        load_source(tmp_path / "nope")


def test_unknown_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no dataset layout recognised; looked for RAFCE_partition\.txt"):
        load_source(tmp_path)


def test_unsupported_file(tmp_path):
    (tmp_path / "x.zip").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.zip'; accepted files: \.parquet"):
        load_source(tmp_path / "x.zip")


def test_query_options_and_keyword_override(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1}, np.random.default_rng(0))
    assert load_source(f"{tmp_path}?size=4&channels=3&workers=1").image_shape == (4, 4, 3)
    assert load_source(f"folder:{tmp_path}?size=4", size=6).image_shape == (6, 6, 1)
    with pytest.raises(DataError, match=r"option size='big' .* must be an integer"):
        load_source(f"{tmp_path}?size=big")
    with pytest.raises(
        DataError,
        match=r"option 'mode' is not accepted by a folder source "
        r".*valid options: channels, classes, size, strict, subject, workers",
    ):
        load_source(tmp_path, mode="x")
    with pytest.raises(DataError, match=r"channels is 2, but must be 1 \(grayscale\) or 3"):
        load_source(tmp_path, channels=2)


def test_scheme_kinds():
    assert {"parquet", "fer2013", "ferplus", "rafce", "rafdb", "folder", "synthetic"} == set(SOURCE_KINDS)


def test_synthetic_source_and_overrides(tmp_path):
    data = load_source("synthetic:basic7?count=14&seed=0", size=48, channels=3)
    assert len(data) == 14 and data.image_shape == (48, 48, 3)
    out = prepare("synthetic:basic7?count=14&seed=0", tmp_path / "s.parquet")
    back = read_parquet(tmp_path / "s.parquet")
    np.testing.assert_array_equal(back.aus, out.aus)
    np.testing.assert_array_equal(back.images, out.images)
    assert back.subjects.tolist() == out.subjects.tolist()
    with pytest.raises(DataError, match=r"option 'cont' is not accepted by a synthetic source.*did you mean 'count'"):
        load_source("synthetic:basic7", cont=3)


def test_default_size_is_most_common_capped(tmp_path):
    from _data_helpers import write_image

    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / "a" / f"{i}.png", rng, size=12)
    write_image(tmp_path / "b" / "0.png", rng, size=300, mode="RGB")
    data = load_source(tmp_path)
    assert data.image_shape == (12, 12, 3)  # one colour image -> 3 channels
    for i in range(3):
        write_image(tmp_path / "b" / f"{i + 1}.png", rng, size=300)
        write_image(tmp_path / "b" / f"{i + 4}.png", rng, size=300)
    assert load_source(tmp_path).image_shape == (224, 224, 3)


def test_shuffle_labels_permutes_the_targets_of_any_source_and_keeps_the_images(tmp_path):
    from ferray.data import load_source

    plain = load_source("synthetic:basic7?count=70&seed=0")
    shuffled = load_source("synthetic:basic7?count=70&seed=0&shuffle_labels=3")
    assert (shuffled.images == plain.images).all()
    assert sorted(shuffled.labels) == sorted(plain.labels) and (shuffled.labels != plain.labels).mean() > 0.5
    assert (load_source("synthetic:basic7?count=70&seed=0&shuffle_labels=3").labels == shuffled.labels).all()
    assert "labels shuffled, seed 3" in shuffled.origin
    path = tmp_path / "plain.parquet"
    from ferray.data._table import write_parquet

    write_parquet(plain, path)
    from_file = load_source(f"{path}?shuffle_labels=3")
    assert (from_file.labels == shuffled.labels).all()


def test_shuffle_labels_needs_an_integer_seed():
    from ferray.data import load_source
    from ferray.errors import DataError

    with pytest.raises(DataError, match=r"shuffle_labels='x'.*integer seed"):
        load_source("synthetic:basic7?count=70&shuffle_labels=x")
