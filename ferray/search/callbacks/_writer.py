"""The background writer: one thread that runs the callbacks' file writes, in order.

Tune callbacks run on Tune's event loop, so a write (a Parquet table on a slow disk, a
TensorBoard import) goes to this thread: a callback costs microseconds, not seconds. A
failed write is logged and never stops the sweep.
"""

from __future__ import annotations

import logging
import queue
import threading

__all__ = ["BackgroundWriter", "background_writer"]

logger = logging.getLogger(__name__)


class BackgroundWriter:
    """One daemon thread that runs file writes handed over by callbacks, in order.

    ``submit(key, fn)`` with a key replaces a not-yet-run job of the same key (a newer
    results table supersedes an older one). :meth:`flush` waits, with a bound, until every
    job submitted so far has run.
    """

    def __init__(self, name: str = "ferray-writer") -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: str | None, fn) -> None:
        with self._lock:
            self._seq += 1
            if key is not None:
                self._latest[key] = self._seq
            self._jobs.put((self._seq, key, fn))

    def _run(self) -> None:
        while True:
            seq, key, fn = self._jobs.get()
            try:
                with self._lock:
                    stale = key is not None and self._latest.get(key, seq) != seq
                if fn is not None and not stale:
                    fn()
            except Exception as exc:  # noqa: BLE001 - a bookkeeping write never stops the sweep
                logger.warning("background write %s failed: %s", key or "", exc)
            finally:
                self._jobs.task_done()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted job ran; False (and a warning) past ``timeout`` seconds."""
        done = threading.Event()
        self.submit(None, done.set)
        if not done.wait(timeout):
            logger.warning("results/TensorBoard writes still pending after %.0f s", timeout)
            return False
        return True


_WRITER: BackgroundWriter | None = None


def background_writer() -> BackgroundWriter:
    """The driver's one background writer (created on first use)."""
    global _WRITER
    if _WRITER is None:
        _WRITER = BackgroundWriter()
    return _WRITER
