"""The prediction files (``oof.parquet``, ``holdout.parquet``): their schema, metadata and round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferray.errors import DataError
from ferray.run import Predictions, read_predictions, write_predictions
from ferray.run.predictions import META_KEY

META = {"class_names": ["a", "b", "c"], "k": 2, "data_fingerprint": "f", "tta": ["hflip"], "kind": "holdout"}


def _predictions(au: bool) -> Predictions:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
    return Predictions(
        rows=np.array([5, 7, 5, 7]),
        ids=np.array(["r5", "r7", "r5", "r7"], dtype=object),
        folds=np.array([0, 0, 1, 1]),
        labels=np.array([2, 0, 2, 0]),
        probs=probs,
        au_probs=rng.random((4, 18)).astype(np.float32) if au else None,
        meta=META,
    )


@pytest.mark.parametrize("au", [False, True])
def test_the_file_has_the_documented_columns_and_metadata(tmp_path, au):
    path = tmp_path / "holdout.parquet"
    write_predictions(_predictions(au), path)
    table = pq.read_table(path)
    expected = [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("fold", pa.int8()),
        ("label", pa.int16()),
        ("probs", pa.list_(pa.float32(), 3)),
    ] + ([("au_probs", pa.list_(pa.float32(), 18))] if au else [])
    assert [(f.name, f.type) for f in table.schema] == expected
    assert META_KEY == b"ferray_predictions"
    assert json.loads(table.schema.metadata[META_KEY]) == META


@pytest.mark.parametrize("au", [False, True])
def test_a_file_reads_back_what_was_written(tmp_path, au):
    pred = _predictions(au)
    write_predictions(pred, tmp_path / "p.parquet")
    back = read_predictions(tmp_path / "p.parquet")
    for name in ("rows", "ids", "folds", "labels", "probs"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pred, name))
    assert (back.au_probs is None) == (not au)
    if au:
        np.testing.assert_array_equal(back.au_probs, pred.au_probs)
    assert back.meta == META and back.class_names == ["a", "b", "c"]


def test_row_means_average_each_row_over_the_fold_models():
    pred = _predictions(au=False)
    means = pred.row_means()
    assert means.rows.tolist() == [5, 7] and means.ids.tolist() == ["r5", "r7"] and means.labels.tolist() == [2, 0]
    np.testing.assert_allclose(means.probs, (pred.probs[:2] + pred.probs[2:]) / 2, rtol=1e-6)


def test_a_parquet_file_without_the_metadata_is_refused(tmp_path):
    pq.write_table(pa.table({"row": [1]}), tmp_path / "other.parquet")
    with pytest.raises(DataError, match=r"other\.parquet: not a ferray predictions file"):
        read_predictions(tmp_path / "other.parquet")


def test_an_unreadable_file_names_itself(tmp_path):
    (tmp_path / "oof.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"oof\.parquet: cannot read predictions"):
        read_predictions(tmp_path / "oof.parquet")
