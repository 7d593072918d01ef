"""Where Ray's own log lines go while ferray drives it.

A sweep's terminal shows ferray's lines: its header, trial progress, errors in its own
words. Ray's driver-side log records (token-auth notices, Tune's and Train's warnings and
hints) and Python warnings raised on the driver (Optuna's among them) go to ``ferray.log`` in the
run directory; workers' output stays in Ray's session
folder (``log_to_driver`` off), whose path the log file records. ``verbose`` keeps Ray's
lines on the terminal as well.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ferray.run.disk import directory_size

__all__ = ["ray_logs_to", "RAY_LOGGERS", "ray_session_usage", "clean_ray_sessions"]

#: Loggers Ray writes to the terminal through handlers of its own.
RAY_LOGGERS = ("ray", "ray.data")


@contextmanager
def ray_logs_to(path: str | os.PathLike, *, verbose: bool = False):
    """Send Ray's log records to ``path`` (appending) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers)))
        if not verbose:
            for h in list(logger.handlers):
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    logger.removeHandler(h)
        logger.addHandler(handler)
    # ferray's own warnings (a callback that could not write a file) go there too.
    ferray_logger = logging.getLogger("ferray")
    ferray_logger.addHandler(handler)
    # Python warnings raised on the driver (Optuna's, Ray's) are log lines too, not terminal output.
    warnings_logger = logging.getLogger("py.warnings")
    warnings_state = (list(warnings_logger.handlers), warnings_logger.propagate)
    logging.captureWarnings(True)
    warnings_logger.addHandler(handler)
    if not verbose:
        warnings_logger.propagate = False
    optuna_logger = logging.getLogger("optuna")
    optuna_level = optuna_logger.level
    if not verbose:
        optuna_logger.setLevel(logging.WARNING)  # "A new study created ..." is ferray's to say
    # Tune's newer console output ignores verbose=0 (a box naming internal classes, a
    # TensorBoard hint into Ray's temporary folder); its classic reporter honours it.
    saved_env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
    from ferray.runtime.compat import raylet_messages_to_logging

    try:
        with raylet_messages_to_logging():
            yield path
    finally:
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env
        optuna_logger.setLevel(optuna_level)
        logging.captureWarnings(False)
        warnings_logger.handlers[:], warnings_logger.propagate = warnings_state
        ferray_logger.removeHandler(handler)
        for logger, handlers in saved:
            logger.handlers[:] = handlers
        handler.close()


def _sessions_root() -> Path:
    return Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"


def ray_session_usage(root: str | os.PathLike | None = None) -> tuple[int, int]:
    """(number of Ray session folders, their bytes) under Ray's temporary folder."""

    base = Path(root) if root is not None else _sessions_root()
    sessions = [p for p in base.glob("session_*") if p.is_dir() and not p.is_symlink()]
    return len(sessions), sum(directory_size(p) for p in sessions)


def clean_ray_sessions(
    root: str | os.PathLike | None = None, *, older_than_s: float = 24 * 3600, keep: int = 3
) -> tuple[int, int]:
    """Delete Ray session folders older than ``older_than_s`` (always keeping the ``keep`` newest
    and the live ``session_latest``); returns (folders removed, bytes freed)."""

    base = Path(root) if root is not None else _sessions_root()
    latest = (base / "session_latest").resolve() if (base / "session_latest").exists() else None
    sessions = sorted(
        (p for p in base.glob("session_*") if p.is_dir() and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed, freed, now = 0, 0, time.time()
    for p in sessions[keep:]:
        if latest is not None and p.resolve() == latest:
            continue
        if now - p.stat().st_mtime < older_than_s:
            continue
        size = directory_size(p)
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed, freed = removed + 1, freed + size
    return removed, freed
