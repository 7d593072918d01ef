"""Sweeps as Ray Jobs: submit one to a cluster, list them, read or follow their logs, stop one.

A submitted sweep runs ``python -m ferray.cluster search SPEC ...`` on the cluster's head
node (see :mod:`ferray.cluster._entrypoint`) in a runtime environment that carries the spec file
(its ``working_dir``) and, unless told otherwise, this machine's ``ferray`` package
(``py_modules``), so the cluster runs the code that submitted it; the packages ferray
depends on (torch, timm, Ray, ...) must be installed on the cluster's nodes.

Every wait is bounded: each request to the job server has a timeout, and following a job
ends with an error when the head stops answering (see :mod:`ferray.cluster._client`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ferray.cluster._client import DEFAULT_TIMEOUT_S, Connection, connect
from ferray.cluster._errors import ClusterError
from ferray.cluster._storage import is_uri, run_uri
from ferray.errors import ConfigError
from ferray.run.layout import check_run_name
from ferray.run.spec import load_search_spec

__all__ = [
    "submit",
    "submit_resume",
    "jobs",
    "logs",
    "stop",
    "wait",
    "SubmittedJob",
    "JobInfo",
    "TERMINAL",
    "DEFAULT_HEAD_STORAGE",
    "exit_code",
]

#: Job states after which nothing changes.
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: Where a job without ``--storage`` keeps its run directory: on the head node's disk.
DEFAULT_HEAD_STORAGE = "~/ferray-runs"
#: Seconds a stopped job's driver gets (after SIGTERM) to save and upload its run before SIGKILL.
STOP_GRACE_S = 60
#: Metadata keys ferray attaches to its jobs (never secrets: they show in ``ray job list``).
_META = ("ferray_run", "ferray_storage", "ferray_command", "ferray_spec")


@dataclass
class SubmittedJob:
    """A job :func:`submit` or :func:`submit_resume` sent to a cluster."""

    job_id: str
    address: str
    run: str  # where the run directory is (a storage URI, or a path on the cluster)
    entrypoint: str
    status: str | None = None  # the final status when the submission waited for the end
    notes: list[str] = field(default_factory=list)

    def follow_lines(self) -> list[str]:
        """How to follow, stop and find the job (what ``ferray submit`` prints)."""
        return [
            f"follow: ferray logs {self.job_id} --address {self.address} --follow",
            f"stop:   ferray stop {self.job_id} --address {self.address}",
            f"dashboard: {self.address}/#/jobs/{self.job_id}",
        ]


@dataclass
class JobInfo:
    """One job on a cluster, as :func:`jobs` lists it."""

    job_id: str
    status: str
    entrypoint: str
    run: str | None
    storage: str | None
    command: str | None
    start_time: float | None  # seconds since the epoch
    end_time: float | None
    message: str

    @property
    def is_ferray(self) -> bool:
        return self.run is not None

    def duration_s(self, now: float | None = None) -> float | None:
        if self.start_time is None:
            return None
        return (self.end_time or now or time.time()) - self.start_time


def exit_code(status: str | None) -> int:
    """The ``ferray`` exit code for a job that ended with ``status`` (0 succeeded, 1 otherwise)."""
    return 0 if status == "SUCCEEDED" else 1


def _ferray_package() -> Path:
    import ferray

    return Path(ferray.__file__).resolve().parent


def _check_env(env: list[str] | tuple[str, ...]) -> list[str]:
    for name in env:
        if "=" in name or not name.isidentifier():
            raise ConfigError(
                f"--env {name.split('=', 1)[0]}=...: give the variable's name only; its value is "
                "read from this shell's environment (values on a command line end up in shell "
                "histories and process lists)"
            )
        if name not in os.environ:
            raise ConfigError(f"--env {name}: not set in this shell's environment")
    return list(env)


def _runtime_env(workdir: Path, *, ship_ferray: bool, env: list[str]) -> dict:
    # `ferray stop` (Ray's stop_job) then sends SIGINT, which Tune handles like Ctrl-C: it saves
    # the experiment and returns, and the driver uploads the run before the grace period ends.
    env_vars = {"PYTHONUNBUFFERED": "1", "RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}
    env_vars.update({name: os.environ[name] for name in env})
    runtime_env: dict = {"working_dir": str(workdir), "env_vars": env_vars}
    if ship_ferray:
        runtime_env["py_modules"] = [str(_ferray_package())]
    return runtime_env


def _submit(
    conn: Connection,
    args: list[str],
    *,
    files: dict[str, Path],
    metadata: dict[str, str],
    run: str,
    ship_ferray: bool,
    env: list[str],
    notes: list[str],
    wait: bool,
    follow_timeout: float | None,
    echo: Callable[[str], None],
) -> SubmittedJob:
    """Submit ``python -m ferray.cluster ARGS``; echo the job id and how to follow it; follow it if ``wait``."""
    entrypoint = shlex.join(["python", "-m", "ferray.cluster", *args])
    with tempfile.TemporaryDirectory(prefix="ferray-submit-") as tmp:
        for name, src in files.items():
            shutil.copyfile(src, Path(tmp) / name)
        runtime_env = _runtime_env(Path(tmp), ship_ferray=ship_ferray, env=env)
        # Uploading the working dir and ferray's package is the slow part: allow it longer.
        job_id = conn.call(
            conn.client.submit_job,
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            metadata=metadata,
            what="submitting the job (uploading the spec and ferray)",
            timeout=max(conn.timeout, 120.0),
        )
    job = SubmittedJob(
        job_id=job_id, address=conn.address, run=run, entrypoint=entrypoint, notes=notes + list(conn.notes)
    )
    if env:
        job.notes.append(
            f"environment variables passed: {', '.join(env)} (values not shown; Ray keeps them with "
            "the job's runtime environment, visible to whoever can list this cluster's jobs)"
        )
    echo(f"submitted job {job_id} to {conn.address}")
    echo(f"run directory: {run}")
    for line in job.follow_lines():
        echo(line)
    for note in job.notes:
        echo(f"note: {note}")
    if wait:
        job.status = logs(job_id, conn, follow=True, timeout=follow_timeout, echo=echo)
    return job


def _connection(address: str | Connection | None, timeout: float) -> Connection:
    return address if isinstance(address, Connection) else connect(address, timeout=timeout)


def submit(
    spec: str | os.PathLike | None,
    address: str | Connection | None,
    storage: str | None = None,
    name: str | None = None,
    wait: bool = False,
    *,
    data: str | None = None,
    ship_ferray: bool = True,
    env: list[str] | tuple[str, ...] = (),
    finish: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    follow_timeout: float | None = None,
    echo: Callable[[str], None] = print,
) -> SubmittedJob:
    """Submit a sweep to a Ray cluster as a Ray Job; return it (with its final status when ``wait``).

    Args:
        spec: a search spec YAML (default: the packaged quickstart). It is checked here,
            before anything is sent, and travels with the job.
        address: the job server, ``http://HEAD:8265`` (default ``RAY_API_SERVER_ADDRESS``).
        storage: where the run directory goes: a URI (``s3://bucket/ferray``, ``gs://...``)
            or a path every node sees (a shared filesystem). Default: ``~/ferray-runs`` on the
            head node, which is lost with the cluster.
        name: the run folder name (default ``<spec name>-<date-time>``, chosen here).
        wait: follow the job's logs until it ends (``echo`` gets each new line).
        data: replaces the spec's ``data.source``: the data's path on the head node, where the
            sweep's driver reads it (the workers get it through Ray's object store).
        ship_ferray: send this machine's ``ferray`` package with the job (default); ``False``
            uses the one installed on the cluster.
        env: names of environment variables whose values (from this shell) the job gets,
            e.g. ``["WANDB_API_KEY"]``. Only names are printed; values are never written.
        finish: run the ensemble, distillation and export stages the spec enables afterwards.
        timeout: seconds each request to the job server may take.
        follow_timeout: with ``wait``, give up following after this many seconds (the job
            keeps running).

    Raises:
        ConfigError: the spec is invalid. ClusterError: the cluster cannot be reached or
        refused the job (the message says why and what to do).
    """
    from ferray.search import packaged_spec

    env = _check_env(env)
    path = Path(spec) if spec is not None else packaged_spec("quickstart")
    loaded = load_search_spec(path)  # fail here, not on the cluster after an upload
    if name is None:
        name = f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_run_name(name)
    head_storage = storage or DEFAULT_HEAD_STORAGE
    run = run_uri(head_storage, name) if is_uri(head_storage) else f"{head_storage.rstrip('/')}/{name}"
    notes = []
    if storage is None:
        notes.append(
            f"no --storage: the run directory stays on the head node ({run}) and goes with the cluster; "
            "pass --storage s3://BUCKET/PREFIX (or a shared filesystem path) to keep it"
        )
    source = data or loaded.data.source
    if not str(source).startswith("synthetic:") and not is_uri(source):
        notes.append(
            f"data source {source!r} is read by the sweep's driver on the head node: it must exist at "
            "that path there (workers get the data from Ray's object store)"
        )
    conn = _connection(address, timeout)
    args = ["search", path.name, "--storage", head_storage, "--name", name]
    if data is not None:
        args += ["--data", data]
    if not finish:
        args.append("--no-finish")
    metadata = {
        "ferray_run": name,
        "ferray_storage": head_storage,
        "ferray_command": "search",
        "ferray_spec": loaded.name,
    }
    return _submit(
        conn,
        args,
        files={path.name: path},
        metadata=metadata,
        run=run,
        ship_ferray=ship_ferray,
        env=list(env),
        notes=notes,
        wait=wait,
        follow_timeout=follow_timeout,
        echo=echo,
    )


def submit_resume(
    run: str,
    address: str | Connection | None,
    *,
    extend: int = 0,
    retry_errored: bool = False,
    wait: bool = False,
    ship_ferray: bool = True,
    env: list[str] | tuple[str, ...] = (),
    finish: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    follow_timeout: float | None = None,
    echo: Callable[[str], None] = print,
) -> SubmittedJob:
    """Submit ``ferray resume`` of a sweep whose run directory is ``run`` (its storage URI or cluster path).

    The job continues a stopped or failed job's sweep from what storage holds: finished
    trials are kept, unfinished ones continue from their last checkpoint. Other arguments
    as :func:`submit` (``extend`` and ``retry_errored`` as ``ferray resume``).
    """

    if extend < 0:
        raise ConfigError(f"--extend {extend}: the number of trials to add must be >= 0")
    env = _check_env(env)
    run = str(run).rstrip("/")
    name = run.rsplit("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    conn = _connection(address, timeout)
    args = ["resume", run]
    if extend:
        args += ["--extend", str(extend)]
    if retry_errored:
        args.append("--retry-errored")
    if not finish:
        args.append("--no-finish")
    storage = run.rsplit("/", 1)[0]
    metadata = {"ferray_run": name, "ferray_storage": storage, "ferray_command": "resume"}
    return _submit(
        conn,
        args,
        files={},
        metadata=metadata,
        run=run,
        ship_ferray=ship_ferray,
        env=list(env),
        notes=[],
        wait=wait,
        follow_timeout=follow_timeout,
        echo=echo,
    )


def _info(details) -> JobInfo:
    meta = details.metadata or {}
    ms = 1000.0
    return JobInfo(
        job_id=details.submission_id or details.job_id or "?",
        status=str(getattr(details.status, "value", details.status)),
        entrypoint=details.entrypoint or "",
        run=meta.get("ferray_run"),
        storage=meta.get("ferray_storage"),
        command=meta.get("ferray_command"),
        start_time=details.start_time / ms if details.start_time else None,
        end_time=details.end_time / ms if details.end_time else None,
        message=details.message or "",
    )


def jobs(
    address: str | Connection | None, *, all_jobs: bool = False, timeout: float = DEFAULT_TIMEOUT_S
) -> list[JobInfo]:
    """The cluster's ferray jobs (every submitted job with ``all_jobs``), newest first."""
    conn = _connection(address, timeout)
    found = [
        _info(d) for d in conn.call(conn.client.list_jobs, what="listing jobs") if getattr(d, "submission_id", None)
    ]
    if not all_jobs:
        found = [j for j in found if j.is_ferray]
    return sorted(found, key=lambda j: j.start_time or 0.0, reverse=True)


def _status(conn: Connection, job: str) -> str:
    try:
        status = conn.call(conn.client.get_job_status, job, what=f"asking for job {job}'s status")
    except ClusterError as exc:
        if "does not exist" in str(exc) or "404" in str(exc):
            raise ClusterError(
                f"no job {job!r} on {conn.address}; `ferray jobs --address {conn.address}` lists them"
            ) from None
        raise
    return str(getattr(status, "value", status))


def logs(
    job: str,
    address: str | Connection | None,
    follow: bool = False,
    *,
    timeout: float | None = None,
    poll_s: float = 2.0,
    unreachable_s: float = 120.0,
    request_timeout: float = DEFAULT_TIMEOUT_S,
    echo: Callable[[str], None] = print,
) -> str:
    """Print a job's logs through ``echo``; return its status (its final status when ``follow``).

    With ``follow``, new lines are printed as they come until the job ends; it gives up
    (``ClusterError``) after ``timeout`` seconds when given, or when the head has not
    answered for ``unreachable_s`` seconds. Giving up never stops the job.
    """
    conn = _connection(address, request_timeout)
    status = _status(conn, job)
    shown = 0
    started = last_answer = time.monotonic()
    delay = poll_s
    while True:
        try:
            text = conn.call(conn.client.get_job_logs, job, what=f"reading job {job}'s logs")
            last_answer = time.monotonic()
        except ClusterError:
            if not follow or time.monotonic() - last_answer > unreachable_s:
                raise
            text = None
        if text is not None and len(text) > shown:
            chunk = text[shown:]
            # Hold back a partial last line until it is complete (or the job has ended).
            cut = len(chunk) if status in TERMINAL or not follow else chunk.rfind("\n") + 1
            for line in chunk[:cut].splitlines():
                echo(line)
            shown += cut
        if not follow or status in TERMINAL:
            return status
        if timeout is not None and time.monotonic() - started > timeout:
            raise ClusterError(
                f"job {job} is still {status} after {timeout:.0f} s of following (it keeps running; "
                f"follow again with `ferray logs {job} --address {conn.address} --follow`)"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
        try:
            status = _status(conn, job)
            last_answer = time.monotonic()
        except ClusterError:
            if time.monotonic() - last_answer > unreachable_s:
                raise ClusterError(
                    f"lost the Ray head at {conn.address}: no answer for {unreachable_s:.0f} s while "
                    f"following job {job} (it may still be running)"
                ) from None


def wait(
    job: str,
    address: str | Connection | None,
    *,
    timeout: float,
    poll_s: float = 1.0,
    request_timeout: float = DEFAULT_TIMEOUT_S,
) -> str:
    """Wait until ``job`` ends; return its status, or ``ClusterError`` after ``timeout`` seconds."""
    conn = _connection(address, request_timeout)
    deadline = time.monotonic() + timeout
    while True:
        status = _status(conn, job)
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            raise ClusterError(f"job {job} is still {status} after waiting {timeout:.0f} s for it to end")
        time.sleep(poll_s)


def stop(
    job: str,
    address: str | Connection | None,
    *,
    timeout: float = STOP_GRACE_S + 30.0,
    request_timeout: float = DEFAULT_TIMEOUT_S,
) -> str:
    """Stop ``job`` and wait (at most ``timeout`` s) until it has stopped; return its final status.

    The job's driver gets ``SIGTERM`` and up to a minute to save the sweep's state and
    upload its run directory before it is killed; ``ferray submit --resume RUN`` continues it.
    """
    conn = _connection(address, request_timeout)
    status = _status(conn, job)
    if status in TERMINAL:
        return status
    conn.call(conn.client.stop_job, job, what=f"stopping job {job}")
    try:
        return wait(job, conn, timeout=timeout)
    except ClusterError:
        raise ClusterError(
            f"job {job} was asked to stop but is still {_status(conn, job)} after {timeout:.0f} s; "
            f"see `ferray logs {job} --address {conn.address}`"
        ) from None
