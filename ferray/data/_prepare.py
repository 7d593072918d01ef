"""``ferray data prepare``: decode a source once into a prepared Parquet file."""

from __future__ import annotations

import os
from typing import Any

from ferray.data._sources import load_source
from ferray.data._table import FERData, write_parquet

__all__ = ["prepare"]


def prepare(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    **options: Any,
) -> FERData:
    """Load ``source`` (see :func:`load_source`) and write it to the Parquet file ``out``.

    The file appears atomically: on any error nothing is left at ``out`` (an existing
    file there is kept unchanged). Returns the data written; its ``warnings`` list
    skipped images and dropped rows.
    """
    data = load_source(source, size=size, channels=channels, strict=strict, **options)
    write_parquet(data, out)
    return data
