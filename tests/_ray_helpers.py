"""Helpers for the tests that start Ray (``tests/`` is on ``sys.path`` through its conftest).

* :func:`start_local_ray`: a local Ray with 2 CPUs in this process, as ferray starts one, shut
  down within a bound (the ``local_ray`` fixture of ``tests/conftest.py`` wraps it).
* :func:`ferray_cli`: a ``ferray`` command in its own process (and so its own local Ray), its
  output appended to a log file; :func:`wait_for` waits on it for a condition, within a bound.
* :func:`run_ferray`: a ``ferray`` command run to its end, its output captured.
* :func:`results_rows` and :func:`ended_trials`: a run's ``results.parquet`` while it is written.

Signals go only to processes a test started: :func:`ferray.testing.kill_tree` on the test's own
``Popen``, and, should ``ray.shutdown()`` hang, the Ray processes below the test's process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ferray.testing import kill_tree, processes_below

#: A trial's states once it has ended, as ``results.parquet`` names them.
FINAL_STATES = ("COMPLETED", "PRUNED", "ERROR")


@contextmanager
def start_local_ray(num_cpus: int = 2, shutdown_timeout: float = 60.0) -> Iterator[None]:
    """A local Ray with ``num_cpus`` CPUs started in (and so below) this process, as ferray starts one.

    Its workers inherit :func:`ferray.runtime.compat.local_ray_environment`, set for the block and
    restored after. ``ray.shutdown()`` gets ``shutdown_timeout`` seconds; past them the Ray
    processes below this process are killed and the test fails, naming the hang.
    """
    import ray

    from ferray.runtime.compat import local_ray_environment

    env = local_ray_environment()
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # inherited by Ray's workers
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")
        try:
            yield
        finally:
            _shutdown_ray(shutdown_timeout)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _shutdown_ray(timeout: float) -> None:
    """``ray.shutdown()``, bounded: a watchdog kills this process's own Ray if it has not returned in time."""
    import ray

    me, hung = os.getpid(), threading.Event()

    def kill_our_ray() -> None:
        hung.set()
        for pid in processes_below(me, "ray"):  # the Ray that ray.init() started below this process
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    watchdog = threading.Timer(timeout, kill_our_ray)
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.shutdown()
    finally:
        watchdog.cancel()
    if hung.is_set():
        pytest.fail(
            f"ray.shutdown() did not return within {timeout:.0f} s; the Ray processes below this test were killed"
        )


def ferray_env(**extra: str) -> dict[str, str]:
    """This process's environment for a ``ferray`` command that starts its own local Ray.

    No ``RAY_ADDRESS`` (a cluster this machine may be connected to is not the test's), output
    unbuffered (a log read while the command runs is up to date), plus ``extra``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def ferray_cli(
    *args: str, log: Path, stderr: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``python -m ferray.cli ARGS`` in its own session, its output appended to ``log``.

    Its standard error goes to ``stderr`` when given, else to ``log`` too. The log first gets a
    ``$ ferray ARGS`` line, so that a log of several commands says which printed what. Stop it
    with :func:`ferray.testing.kill_tree` (the whole tree: its local Ray too).
    """
    with open(log, "ab") as out:
        out.write(f"\n$ ferray {' '.join(args)}\n".encode())
        out.flush()
        err = open(stderr, "ab") if stderr is not None else None  # noqa: SIM115 - closed below, once started
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "ferray.cli", *args],
                stdout=out,
                stderr=err if err is not None else subprocess.STDOUT,
                env=ferray_env() if env is None else env,
                start_new_session=True,
            )
        finally:
            if err is not None:
                err.close()


def wait_for(
    proc: subprocess.Popen, condition: Callable[[], object], timeout: float, what: str, log: Path, poll: float = 0.1
) -> None:
    """Return as soon as ``condition()`` holds while ``proc`` runs.

    Fails, with the end of ``log``, when ``proc`` exits first or ``timeout`` seconds pass (then
    ``proc``'s process tree is killed first); ``what`` names the awaited moment in the message.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"{_command(proc)} exited ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(poll)
    kill_tree(proc)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-4000:]}")


def _command(proc: subprocess.Popen) -> str:
    """``ferray search`` for a ``python -m ferray.cli search ...`` process."""
    args = [str(a) for a in proc.args]
    return f"`ferray {args[3]}`" if args[1:3] == ["-m", "ferray.cli"] and len(args) > 3 else "the command"


def run_ferray(
    *args: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    module: str = "ferray.cli",
) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` run to its end (within ``timeout`` seconds), its output captured as text.

    ``env`` defaults to :func:`ferray_env`; ``module`` is ``ferray.cluster`` for a cluster job's entry point.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=ferray_env() if env is None else env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def results_rows(run: Path) -> list[dict]:
    """The rows of ``run/results.parquet``; none while it is absent (or being replaced)."""
    from ferray.run.results import read_results

    try:
        return read_results(run / "results.parquet")
    except (OSError, ValueError):
        return []


def ended_trials(run: Path) -> dict[str, list[dict]]:
    """Each ended trial's rows in ``results.parquet``, by trial id.

    Columns another trial added later read as ``None`` in this trial's rows: they are left out,
    so that a trial's rows compare equal before and after other trials ran.
    """
    by: dict[str, list[dict]] = {}
    for r in results_rows(run):
        if r["state"] in FINAL_STATES:
            by.setdefault(r["trial_id"], []).append({k: v for k, v in r.items() if v is not None})
    return by
