"""The canonical in-memory form of every FER dataset, and its Parquet file.

Whatever the source layout (class folders, the FER2013 CSV, FER+ votes, RAF-CE label
files, synthetic faces), a dataset becomes one :class:`FERData`: numpy arrays that line
up row by row, plus the class and action-unit names. ``FERData.to_table()`` gives the
same rows as a :class:`pyarrow.Table` without copying the pixel buffer.

Parquet contract (``ferray data prepare`` writes it, every trial reads it):

=============  =====================================  ==========================================
column         Arrow type                             meaning
=============  =====================================  ==========================================
``id``         string                                 stable row id (relative path or ``file:line``)
``image``      fixed_size_binary[H*W*C]               pixels, row-major HxWxC uint8
``label``      int16                                  index into ``class_names``
``soft_label`` fixed_size_list<float32>[n_classes]    optional label distribution (FER+ votes)
``aus``        fixed_size_list<uint8>[18]             optional AU multi-hot, order of ``AU_IDS``
``subject``    string                                 optional subject / group id
``split``      string                                 original split: ``train``, ``val`` or ``test``
``source``     string                                 where the row came from (path or ``file:line``)
=============  =====================================  ==========================================

The schema metadata key ``ferray`` holds JSON: ``format_version``, ``height``, ``width``,
``channels``, ``class_names``, ``au_ids`` and ``source`` (and ``original_class_names`` when
the source's class names were mapped onto canonical ones). The pixel column is stored
uncompressed and without dictionary encoding as Parquet FIXED_LEN_BYTE_ARRAY (one byte
per pixel on disk; a list<uint8> column would widen every pixel to INT32 plus repetition
levels), so reading it back is one memory-mapped read and a zero-copy view into numpy.
Files whose ``image`` column is ``fixed_size_list<uint8>`` are read as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferray.errors import DataError

__all__ = ["AU_IDS", "SPLITS", "FERData", "read_parquet", "write_parquet", "FORMAT_VERSION"]

#: The 18 facial action units of ferray's multi-task heads, in vector order.
AU_IDS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 15, 17, 20, 23, 24, 25, 26, 43, 45)
#: Canonical names of original splits.
SPLITS: tuple[str, ...] = ("train", "val", "test")
FORMAT_VERSION = 1
_META_KEY = b"ferray"


@dataclass(frozen=True, eq=False)
class FERData:
    """A FER dataset in canonical form; all arrays have ``len(self)`` rows.

    Attributes:
        images: ``uint8`` array of shape ``(N, H, W, C)``.
        labels: ``int64`` class indices into ``class_names``.
        class_names: names of the classes, in label order.
        ids: stable row ids (``str`` object array).
        splits: original split per row, one of :data:`SPLITS`.
        sources: where each row came from (path or ``file:line``).
        soft_labels: optional ``float32`` ``(N, n_classes)`` label distributions.
        aus: optional ``uint8`` ``(N, 18)`` multi-hot AU vectors in :data:`AU_IDS` order.
        subjects: optional subject/group ids (``str`` object array).
        origin: a short description of the source (path or ``synthetic:...`` spec).
        original_class_names: the source's own name of each class (e.g. the folder
            ``1 - Happy`` of class ``happy``) when they differ from ``class_names``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    soft_labels: np.ndarray | None = None
    aus: np.ndarray | None = None
    subjects: np.ndarray | None = None
    origin: str = ""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    original_class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        for name in ("labels", "ids", "splits", "sources", "soft_labels", "aus", "subjects"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} has {len(arr)} rows but images has {n}")
        if self.original_class_names is not None and len(self.original_class_names) != len(self.class_names):
            raise DataError(
                f"original_class_names has {len(self.original_class_names)} names but there are "
                f"{len(self.class_names)} classes"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"labels must lie in 0..{len(self.class_names) - 1} for classes {list(self.class_names)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self, split: str | None = None) -> np.ndarray:
        """Rows per class, optionally only those of one original split."""
        labels = self.labels if split is None else self.labels[self.splits == split]
        return np.bincount(labels, minlength=self.num_classes)

    def subset(self, index: np.ndarray) -> FERData:
        """Rows selected by an integer or boolean index, as a new :class:`FERData`."""

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            ids=self.ids[index],
            splits=self.splits[index],
            sources=self.sources[index],
            soft_labels=take(self.soft_labels),
            aus=take(self.aus),
            subjects=take(self.subjects),
        )

    def fingerprint(self) -> str:
        """A content hash of pixels, labels, ids and names; equal data gives equal prints wherever it was read from."""
        h = hashlib.sha256()
        meta = {k: v for k, v in self._meta().items() if k != "source"}  # content, not location
        h.update(json.dumps(meta, sort_keys=True).encode())
        for arr in (self.images, self.labels.astype(np.int64), self.soft_labels, self.aus):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).data)
        h.update("\0".join(map(str, self.ids)).encode())
        return h.hexdigest()[:16]

    def _meta(self) -> dict:
        h, w, c = self.image_shape if len(self) else (0, 0, 0)
        meta = {
            "format_version": FORMAT_VERSION,
            "height": int(h),
            "width": int(w),
            "channels": int(c),
            "class_names": list(self.class_names),
            "au_ids": list(AU_IDS),
            "source": self.origin,
        }
        if self.original_class_names is not None:  # only then, so other fingerprints stay as they were
            meta["original_class_names"] = list(self.original_class_names)
        return meta

    def to_table(self) -> pa.Table:
        """The rows as a :class:`pyarrow.Table` in the Parquet contract's schema."""
        n = len(self)
        pixels = int(np.prod(self.image_shape)) if n else 0
        pixel_buf = pa.py_buffer(np.ascontiguousarray(self.images).reshape(-1))
        cols: dict[str, pa.Array] = {
            "id": pa.array(self.ids.astype(str), pa.string()),
            "image": pa.FixedSizeBinaryArray.from_buffers(pa.binary(max(pixels, 1)), n, [None, pixel_buf]),
            "label": pa.array(self.labels.astype(np.int16)),
        }
        if self.soft_labels is not None:
            soft = pa.array(np.ascontiguousarray(self.soft_labels, np.float32).reshape(-1))
            cols["soft_label"] = pa.FixedSizeListArray.from_arrays(soft, self.num_classes)
        if self.aus is not None:
            aus = pa.array(np.ascontiguousarray(self.aus, np.uint8).reshape(-1))
            cols["aus"] = pa.FixedSizeListArray.from_arrays(aus, len(AU_IDS))
        if self.subjects is not None:
            cols["subject"] = pa.array(self.subjects.astype(str), pa.string())
        cols["split"] = pa.array(self.splits.astype(str), pa.string())
        cols["source"] = pa.array(self.sources.astype(str), pa.string())
        table = pa.table(cols)
        meta = {_META_KEY: json.dumps(self._meta()).encode()}
        return table.replace_schema_metadata(meta)

    @classmethod
    def from_table(cls, table: pa.Table, origin: str | None = None) -> FERData:
        """Inverse of :meth:`to_table`; the pixel array is a zero-copy view where Arrow allows."""
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise DataError("table has no 'ferray' schema metadata; was it written by ferray?")
        meta = json.loads(raw)
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"prepared data format_version {meta.get('format_version')} is not supported "
                f"(this ferray reads {FORMAT_VERSION}); run 'ferray data prepare' again"
            )
        h, w, c = meta["height"], meta["width"], meta["channels"]
        n = table.num_rows

        def fixed(name: str, dtype: type, width: int) -> np.ndarray | None:
            if name not in table.column_names:
                return None
            col = table.column(name).combine_chunks()
            values = col.values.to_numpy(zero_copy_only=False)
            return values.astype(dtype, copy=False).reshape(n, width)

        if pa.types.is_fixed_size_binary(table.schema.field("image").type):
            col = table.column("image").combine_chunks()
            images = np.frombuffer(col.buffers()[1], np.uint8, count=n * h * w * c, offset=col.offset * h * w * c)
            images = images.reshape(n, h * w * c)
        else:  # files written before the image column became fixed_size_binary
            images = fixed("image", np.uint8, h * w * c)
        images = images.reshape(n, h, w, c) if images is not None else np.zeros((0, h, w, c), np.uint8)

        def strings(name: str) -> np.ndarray | None:
            if name not in table.column_names:
                return None
            return np.asarray(table.column(name).to_pylist(), dtype=object)

        return cls(
            images=images,
            labels=table.column("label").to_numpy().astype(np.int64),
            class_names=tuple(meta["class_names"]),
            ids=strings("id"),
            splits=strings("split"),
            sources=strings("source"),
            soft_labels=fixed("soft_label", np.float32, len(meta["class_names"])),
            aus=fixed("aus", np.uint8, len(meta.get("au_ids", AU_IDS))),
            subjects=strings("subject"),
            origin=origin if origin is not None else meta.get("source", ""),
            original_class_names=tuple(meta["original_class_names"]) if meta.get("original_class_names") else None,
        )


def write_parquet(data: FERData, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = data.to_table()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(
            table,
            tmp,
            compression={name: ("NONE" if name == "image" else "ZSTD") for name in table.column_names},
            use_dictionary=[n for n in table.column_names if n in ("split", "subject")],
            row_group_size=max(1, len(data)),
        )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_parquet(path: str | os.PathLike) -> FERData:
    """Read a file written by :func:`write_parquet` (memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such prepared file")
    try:
        table = pq.read_table(path, memory_map=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    try:
        return FERData.from_table(table, origin=str(path))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
