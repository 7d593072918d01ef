"""A run directory on remote storage (``--storage s3://...``): push the driver's files, pull a run.

With a storage URI, a sweep writes its files in two places:

* ``URI/NAME/``: Tune's experiment state (Tune uploads it) and every trial's folder, which
  the trial and its fold workers write there directly (``config.yaml``, ``checkpoints/``,
  ``weights/``, ``oof.parquet``, ``holdout.parquet``, ``metrics.json``).
* ``runs/NAME/`` on the machine that runs the sweep's driver: the manifest, spec, folds,
  Optuna study, ``results.parquet``, ``ferray.log``, TensorBoard logs, and the later
  stages' folders (``ensemble/``, ``distill/``, ``bundle/``).

:func:`push_run` copies the second onto the first, so that ``URI/NAME`` is a complete run
directory (a cluster job does this while the sweep runs and when it ends, see
:mod:`ferray.cluster._entrypoint`); :func:`pull_run` copies a run directory from storage to a local
folder, where ``ferray status``, ``ensemble``, ``export`` and ``report`` read it.

Both go through pyarrow's filesystems, the same code path for ``s3://``, ``gs://`` and
``file://`` URIs (the tests use ``file://``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ferray._io import atomic_write, resolve_fs, sqlite_snapshot
from ferray.cluster._errors import ClusterError
from ferray.run.layout import RunLayout, TrialLayout

__all__ = ["push_run", "pull_run", "join_uri", "is_uri", "run_uri", "is_empty"]

_CHUNK = 1 << 20
#: Name endings never copied (see _skipped).
_SKIP_SUFFIXES = (".tmp", "-journal", "-wal", "-shm")


def is_uri(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI (``s3://...``, ``file:///...``) rather than a local path."""
    return "://" in str(path)


def join_uri(base: str, *parts: str) -> str:
    """``base/part/...``, keeping a query string (``s3://b/x?region=eu-west-1``) at the end.

    >>> join_uri("s3://bucket/ferray/", "run1", "oof.parquet")
    's3://bucket/ferray/run1/oof.parquet'
    >>> join_uri("s3://bucket/ferray?region=eu-west-1", "run1")
    's3://bucket/ferray/run1?region=eu-west-1'
    """
    head, sep, query = str(base).partition("?")
    out = head.rstrip("/")
    for part in parts:
        out += "/" + str(part).strip("/")
    return out + (sep + query if sep else "")


def run_uri(storage: str, name: str) -> str:
    """Where a sweep named ``name`` with ``--storage storage`` keeps its run directory."""
    return join_uri(storage, name)


def _filesystem(uri: str):
    import pyarrow as pa

    try:
        fs, path = resolve_fs(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        raise ClusterError(f"{uri}: not a storage URI this machine can open ({exc})") from None
    return fs, path.rstrip("/")


def _listing(fs, root: str) -> dict:
    """Relative path -> FileInfo of every file below ``root`` (empty when ``root`` is absent)."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {info.path[len(root) + 1 :]: info for info in infos if info.type == pafs.FileType.File}


def _mtime(info) -> float:
    return info.mtime.timestamp() if info.mtime is not None else 0.0


#: Folders only the driver writes: on storage they mirror the local copy (files gone here go there).
_MIRRORED = (RunLayout.ENSEMBLE, RunLayout.DISTILL, RunLayout.BUNDLE, RunLayout.REPORT)


def _skipped(rel: str) -> bool:
    """Files never copied: work in progress (ferray writes it under hidden or ``.tmp`` names) and
    SQLite's side files (the study is copied from a snapshot)."""
    parts = rel.split("/")
    return parts[-1].endswith(_SKIP_SUFFIXES) or any(p.startswith(".") for p in parts)


def _upload(fs, src: Path, dst: str) -> None:
    """Copy a local file to ``dst`` on ``fs``.

    Object stores publish an object only when its upload completes, so readers never see a
    torn file; on a local or mounted filesystem the copy goes to a temporary name first and
    is renamed. (One filesystem object serves the whole tree: resolving each file's URI
    anew, as :func:`ferray._io.atomic_write` does, costs an S3 region lookup per file.)
    """
    parent = dst.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    local = fs.type_name == "local"
    target = f"{parent}/.{dst.rsplit('/', 1)[1]}.upload.tmp" if local else dst
    with open(src, "rb") as f, fs.open_output_stream(target) as out:
        shutil.copyfileobj(f, out, _CHUNK)
    if local:
        fs.move(target, dst)


def _study_snapshot(path: Path, tmp_dir: str) -> Path:
    """A consistent copy of the Optuna SQLite study, taken while the sweep may be writing to it."""
    snapshot = Path(tmp_dir) / path.name
    sqlite_snapshot(path, snapshot)
    return snapshot


def is_empty(uri: str) -> bool:
    """Whether nothing is stored at or below ``uri`` (a new run's folder must be)."""
    fs, root = _filesystem(uri)
    try:
        return not _listing(fs, root)
    except OSError as exc:
        raise ClusterError(f"{uri}: cannot list it ({exc})") from None


def push_run(run_dir: str | os.PathLike, uri: str, *, echo: Callable[[str], None] | None = None) -> int:
    """Copy a run directory's driver-side files to ``uri`` (its folder on storage); return the count.

    Trial folders are left out: with a storage URI the trials write theirs there directly.
    Files that storage already holds unchanged (same size, not older) are not copied again,
    so calling this every minute during a sweep costs little.

    Raises:
        ClusterError: ``run_dir`` is not a folder, or ``uri`` cannot be opened or written.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ClusterError(f"{run}: no such run directory to push")
    fs, root = _filesystem(uri)
    trials = {t.root.name for t in RunLayout(run).trials()}
    try:
        remote = _listing(fs, root)
    except OSError as exc:
        raise ClusterError(f"{uri}: cannot list the run folder on storage ({exc})") from None
    copied, size = 0, 0
    with tempfile.TemporaryDirectory(prefix="ferray-push-") as tmp:
        for path in sorted(p for p in run.rglob("*") if p.is_file()):
            rel = path.relative_to(run).as_posix()
            if rel.split("/", 1)[0] in trials or _skipped(rel):
                continue
            stat = path.stat()
            known = remote.get(rel)
            if known is not None and known.size == stat.st_size and _mtime(known) >= stat.st_mtime:
                continue
            src = _study_snapshot(path, tmp) if rel == RunLayout.STUDY else path
            try:
                _upload(fs, src, f"{root}/{rel}")
            except OSError as exc:
                raise ClusterError(f"cannot write {join_uri(uri, rel)} ({exc})") from None
            copied, size = copied + 1, size + stat.st_size
    # A stage's folder is rewritten as a whole (an export replaces the old bundle): drop what it no longer holds.
    for rel, info in remote.items():
        top = rel.split("/", 1)[0]
        if top in _MIRRORED and (run / top).is_dir() and not (run / rel).is_file():
            try:
                fs.delete_file(info.path)
            except OSError as exc:
                raise ClusterError(f"cannot delete the stale {join_uri(uri, rel)} ({exc})") from None
    if echo is not None and copied:
        echo(f"pushed {copied} files ({size / 1e6:.1f} MB) of {run} to {uri}")
    return copied


def pull_run(
    uri: str,
    dest: str | os.PathLike | None = None,
    *,
    checkpoints: bool = False,
    weights: bool = True,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Copy a run directory from storage to a local folder (default ``runs/<name>``); return it.

    Epoch checkpoints stay on storage unless ``checkpoints`` (``ferray resume`` reads them
    there); ``weights=False`` also leaves the fold weights (``status`` and ``report`` do not
    need them; ``ensemble`` needs predictions only, ``distill`` and ``export`` the weights).
    A local file newer than its copy on storage is kept, so pulling again only fetches what
    changed.

    Raises:
        ClusterError: nothing at ``uri``, or it is not a ferray run directory.
    """

    fs, root = _filesystem(uri)
    try:
        files = _listing(fs, root)
    except OSError as exc:
        raise ClusterError(f"{uri}: cannot list it ({exc})") from None
    if not files:
        raise ClusterError(f"{uri}: nothing there (give the run folder on storage: STORAGE/NAME)")
    if RunLayout.MANIFEST not in files:
        trial_files = {TrialLayout.CONFIG, TrialLayout.OOF, TrialLayout.METRICS}
        has_trials = any(rel.count("/") == 1 and rel.rsplit("/", 1)[1] in trial_files for rel in files)
        raise ClusterError(
            f"{uri} is not a ferray run directory (no {RunLayout.MANIFEST})"
            + (
                "; its trials are there but the driver's files were never pushed: run "
                "`ferray.cluster.push_run(RUN_DIR, URI)` where the sweep ran"
                if has_trials
                else ""
            )
        )
    target = Path(dest) if dest is not None else Path("runs") / root.rsplit("/", 1)[-1]
    copied, size = 0, 0
    for rel, info in sorted(files.items()):
        parts = rel.split("/")
        if (
            _skipped(rel)
            or (not checkpoints and TrialLayout.CHECKPOINTS in parts[:-1])
            or (not weights and TrialLayout.WEIGHTS in parts[:-1])
        ):
            continue
        local = target.joinpath(*parts)
        if local.is_file() and local.stat().st_mtime >= _mtime(info):
            continue
        try:
            with fs.open_input_stream(info.path) as src:
                atomic_write(local, lambda out, src=src: shutil.copyfileobj(src, out, _CHUNK))
            # The copy carries storage's time (as `rsync -t`): pulling again skips it, pushing
            # the folder back does not upload it again.
            os.utime(local, (_mtime(info), _mtime(info)))
        except OSError as exc:
            raise ClusterError(f"cannot copy {join_uri(uri, rel)} to {local} ({exc})") from None
        copied, size = copied + 1, size + info.size
    if echo is not None:
        echo(f"pulled {copied} files ({size / 1e6:.1f} MB) of {uri} to {target}")
    return target
