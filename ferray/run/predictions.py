"""The prediction files of a run: out-of-fold and holdout probabilities.

A finished trial leaves ``oof.parquet`` and ``holdout.parquet``, and so do the ensemble stage
(``RUN/ensemble/``) and the student (``RUN/distill/``); the ensemble, distillation, report
and export stages and ``ferray status`` read them. This module is the format, torch-free:
:class:`Predictions`, :func:`write_predictions` and :func:`read_predictions`.

``oof.parquet``: one row per cross-validation row of the dataset, predicted by the one
fold model that did not train on it.

==============  ======================================  =========================================
column          type                                    meaning
==============  ======================================  =========================================
``row``         int64                                   row index in the dataset
``id``          string                                  the dataset's row id
``fold``        int8                                    fold whose model predicted the row
``label``       int16                                   true class index
``probs``       fixed_size_list<float32>[n_classes]     class probabilities (TTA mean)
``au_probs``    fixed_size_list<float32>[18]            AU probabilities (multi-task heads only)
==============  ======================================  =========================================

``holdout.parquet``: the same columns, one row per holdout row *per fold model*
(``fold`` says which model), so an ensemble can average or weigh fold models.

Both carry schema metadata ``ferray_predictions`` (:data:`META_KEY`, JSON): ``class_names``, ``k``,
``data_fingerprint``, ``kind`` (``oof`` or ``holdout``), ``tta``.

Files are written to a temporary name and renamed, on local disk or any pyarrow
filesystem URI (``s3://...``).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferray._io import atomic_write, resolve_fs
from ferray.errors import DataError

__all__ = ["META_KEY", "Predictions", "RowMeans", "write_predictions", "read_predictions"]

#: The schema metadata key of a predictions file; its value is the JSON of :attr:`Predictions.meta`.
META_KEY = b"ferray_predictions"


class RowMeans(NamedTuple):
    """:meth:`Predictions.row_means`: sorted unique rows with their ids, labels and mean probabilities."""

    rows: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    au_probs: np.ndarray | None


class Predictions:
    """Predictions of fold models for rows of a dataset (see the module docstring)."""

    def __init__(
        self,
        rows: np.ndarray,
        ids: np.ndarray,
        folds: np.ndarray,
        labels: np.ndarray,
        probs: np.ndarray,
        au_probs: np.ndarray | None,
        meta: dict,
    ):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.ids = np.asarray(ids, dtype=object)
        self.folds = np.asarray(folds, dtype=np.int8)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.probs = np.asarray(probs, dtype=np.float32)
        self.au_probs = None if au_probs is None else np.asarray(au_probs, dtype=np.float32)
        self.meta = meta

    def __len__(self) -> int:
        return len(self.rows)

    def row_means(self) -> RowMeans:
        """One entry per dataset row, the fold models' probabilities averaged (float64).

        A holdout file holds each holdout row once per fold model; an out-of-fold file's rows
        are already unique, and come back as they are (sorted by row).
        """
        rows, first, inverse = np.unique(self.rows, return_index=True, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(rows)).astype(np.float64)[:, None]

        def mean(values: np.ndarray) -> np.ndarray:
            out = np.zeros((len(rows), values.shape[1]))
            np.add.at(out, inverse, values.astype(np.float64))
            return out / np.maximum(counts, 1)

        return RowMeans(
            rows,
            self.ids[first],
            self.labels[first],
            mean(self.probs),
            None if self.au_probs is None else mean(self.au_probs),
        )

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def to_table(self) -> pa.Table:
        c = self.probs.shape[1]
        cols = {
            "row": pa.array(self.rows),
            "id": pa.array(self.ids.astype(str)),
            "fold": pa.array(self.folds),
            "label": pa.array(self.labels.astype(np.int16)),
            "probs": pa.FixedSizeListArray.from_arrays(pa.array(self.probs.reshape(-1)), c),
        }
        if self.au_probs is not None:
            cols["au_probs"] = pa.FixedSizeListArray.from_arrays(
                pa.array(self.au_probs.reshape(-1)), self.au_probs.shape[1]
            )
        return pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(self.meta).encode()})

    @classmethod
    def from_table(cls, table: pa.Table) -> Predictions:
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        if "class_names" not in meta:
            raise DataError("not a ferray predictions file (no 'ferray_predictions' metadata)")
        n = table.num_rows

        def fixed(name: str) -> np.ndarray | None:
            if name not in table.column_names:
                return None
            col = table.column(name).combine_chunks()
            return col.values.to_numpy().reshape(n, col.type.list_size)

        return cls(
            rows=table.column("row").to_numpy(),
            ids=np.asarray(table.column("id").to_pylist(), dtype=object),
            folds=table.column("fold").to_numpy(),
            labels=table.column("label").to_numpy(),
            probs=fixed("probs"),
            au_probs=fixed("au_probs"),
            meta=meta,
        )


def write_predictions(pred: Predictions, uri: str | os.PathLike) -> None:
    """Write predictions to ``uri`` (local path or filesystem URI) atomically."""
    table = pred.to_table()
    atomic_write(uri, lambda stream: pq.write_table(table, stream))


def read_predictions(uri: str | os.PathLike) -> Predictions:
    """Read an ``oof.parquet`` or ``holdout.parquet`` file."""
    fs, path = resolve_fs(uri)
    try:
        table = pq.read_table(path, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{uri}: cannot read predictions ({exc})") from None
    try:
        return Predictions.from_table(table)
    except DataError as exc:
        raise DataError(f"{uri}: {exc}") from None
