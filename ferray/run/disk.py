"""How many bytes a run directory holds, and how many the retention policy removed from it.

>>> disk_usage("runs/quickstart-20261130-120000")  # doctest: +SKIP
{'bytes': 48211042, 'removed_bytes': 301992001, 'removed_files': 96, 'cleaned_trials': 8}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ferray.run.layout import RunLayout

__all__ = ["disk_usage", "directory_size", "path_size"]


def directory_size(path: str | os.PathLike) -> int:
    """Bytes of every file below ``path`` (0 when it does not exist), as ``du`` counts them:
    a file with several hard links below ``path`` (a bundle's weights and its trials') once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for base, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(base, f))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def path_size(path: Path) -> tuple[int, int]:
    """(files, bytes) below ``path`` (a file or a folder)."""
    if path.is_file() or path.is_symlink():
        try:
            return 1, path.lstat().st_size
        except OSError:
            return 0, 0
    files = total = 0
    for base, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
                files += 1
            except OSError:
                pass
    return files, total


def disk_usage(run_dir: str | os.PathLike) -> dict:
    """The run directory's size and what the retention policy removed from it.

    Keys: ``bytes`` (now), ``removed_bytes`` and ``removed_files`` (summed over
    ``retention.jsonl``), ``cleaned_trials`` (trials it cleaned at least once).
    """
    run = RunLayout(Path(run_dir))
    removed = files = 0
    trials: set[str] = set()
    try:
        lines = run.retention.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:  # a line torn by a crash
            continue
        if isinstance(rec, dict):
            removed += int(rec.get("bytes") or 0)
            files += int(rec.get("files") or 0)
            trials.add(str(rec.get("trial_id")))
    return {
        "bytes": directory_size(run.root),
        "removed_bytes": removed,
        "removed_files": files,
        "cleaned_trials": len(trials),
    }
