"""Helpers for tests and benchmarks that interrupt real ferray processes (Linux ``/proc``).

They only ever touch processes below a given one (the test's own Ray, the ``ferray`` command it
started), never other processes on the machine: a shared machine may run other people's sweeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["descendants", "kill_tree", "processes_below", "Freezer"]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def processes_below(pid: int, *names: str) -> list[int]:
    """The processes below ``pid`` whose command line contains one of ``names``.

    A Ray worker's command line is its process title, ``ray::ClassName.method`` (e.g.
    ``ray::RayTrainWorker.run_train_fn``, ``ray::TrainController.run``, ``ray::ImplicitFunc.train``
    for a Tune trial's actor). A local Ray started by this process (``ray.init()``) runs below it.
    """
    out = []
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(name in cmdline for name in names):
            out.append(child)
    return out


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): with the pid, its identity."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Freezer:
    """SIGSTOPs processes and, on :meth:`thaw` (or leaving its ``with`` block), SIGCONTs them.

    A frozen process that has since ended is left alone on thaw (its pid may belong to another
    process by then). :meth:`watch` freezes, from a background thread, whatever a function finds
    (e.g. ``lambda: processes_below(os.getpid(), "RayTrainWorker")``) as soon as it appears.
    """

    def __init__(self) -> None:
        self._frozen: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def frozen(self) -> list[int]:
        """The pids frozen so far, in order."""
        with self._lock:
            return list(self._frozen)

    def freeze(self, pids: Iterable[int]) -> list[int]:
        """SIGSTOP each pid not frozen yet; returns the ones it froze."""
        done = []
        with self._lock:
            if self._stop.is_set():
                return done
            for pid in pids:
                started = _start_time(pid)
                if pid in self._frozen or started is None:
                    continue
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    continue
                self._frozen[pid] = started
                done.append(pid)
        return done

    def watch(self, find: Callable[[], Iterable[int]], *, once: bool = False, poll_s: float = 0.1) -> None:
        """Freeze what ``find()`` returns every ``poll_s`` seconds until :meth:`thaw`; with ``once``,
        stop watching after the first call that froze something."""

        def run() -> None:
            while not self._stop.is_set():
                if self.freeze(find()) and once:
                    return
                self._stop.wait(poll_s)

        thread = threading.Thread(target=run, name="ferray-freezer", daemon=True)
        self._threads.append(thread)
        thread.start()

    def thaw(self) -> None:
        """Stop watching and SIGCONT every frozen process that still runs."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with self._lock:
            for pid, started in self._frozen.items():
                if _start_time(pid) == started:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass

    def __enter__(self) -> Freezer:
        return self

    def __exit__(self, *exc) -> None:
        self.thaw()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_tree(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGKILL a process and everything under it (a driver, its Ray, trial drivers, workers) and wait."""
    pids = [proc.pid, *descendants(proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=timeout)
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
