"""One way to write a file that a crash must never leave half-written.

:func:`atomic_write` writes to a temporary name beside the target, flushes it to disk
(fsync of the file and, on local disks, of its folder) and renames it over the target, on
a local path or any pyarrow filesystem URI (``s3://...``). A reader sees the old file or
the new one, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "sqlite_snapshot",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "json_safe",
    "append_line",
    "resolve_fs",
    "replace_folder",
]


def resolve_fs(uri: str | os.PathLike):
    """A pyarrow filesystem and path for a local path or a URI such as ``s3://bucket/run``."""
    import pyarrow.fs as pafs

    uri = str(uri)
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory
        pass
    finally:
        os.close(fd)


def atomic_write(uri: str | os.PathLike, data: bytes | Callable[[Any], None]) -> None:
    """Write ``data`` (bytes, or a function writing to a binary stream) to ``uri`` atomically."""
    uri = str(uri)
    if "://" not in uri:
        path = os.path.abspath(uri)
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                if callable(data):
                    data(f)
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(parent)
        return
    fs, path = resolve_fs(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with fs.open_output_stream(tmp) as stream:
            if callable(data):
                data(stream)
            else:
                stream.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except (OSError, FileNotFoundError):
            pass
        raise


def atomic_write_text(uri: str | os.PathLike, text: str) -> None:
    atomic_write(uri, text.encode())


def atomic_write_json(uri: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (numpy scalars as floats)."""
    atomic_write(uri, json.dumps(obj, indent=2, sort_keys=False, default=float).encode())


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars as Python values and NaN/inf as ``None`` (JSON's null).

    Dict keys become strings and tuples lists, so the result survives a JSON round trip unchanged.

    >>> json_safe({"acc": float("nan"), 1: (0.5, float("inf"))})
    {'acc': None, '1': [0.5, None]}
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if not isinstance(obj, (str, bytes)) and hasattr(obj, "tolist"):  # numpy array or scalar, without numpy
        obj = obj.tolist()
        if isinstance(obj, list):
            return json_safe(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync it: a crash loses at most the line being written.

    A line-oriented log stays readable after a crash (a reader skips a torn last line);
    appending is atomic for a single ``write`` of a short line on local file systems.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_folder(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a fully written ``staging`` folder to ``target`` (same file system).

    An earlier ``target`` is renamed aside first and deleted only once the new one is in
    place, so a reader sees the old folder or the new one, never a mix; should the final
    rename fail, the old folder is put back.
    """
    staging, target = os.fspath(staging), os.fspath(target)
    old = None
    if os.path.exists(target):
        old = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sqlite_snapshot(path: str | os.PathLike, dest: str | os.PathLike) -> None:
    """A consistent copy of the SQLite database at ``path`` in ``dest``, taken while another
    process may be writing to it; the source is opened read-only and never written."""
    src = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(os.fspath(dest))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
