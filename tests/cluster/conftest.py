"""Real Ray clusters on loopback, with token authentication: started once per module, always stopped.

``ray_head`` is one head node with its job server; ``ray_two_nodes`` is a head plus a second
node that joins it (two raylets on one machine, each with its own ports and temp dir), both
declaring a GPU this machine may not have (Ray accepts declared GPUs; torch sees no CUDA).
Each node is ``ray start --block`` in its own process group: SIGTERM makes it stop every
process it started, and only those (``ray stop`` would stop every Ray on this machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import pytest


@dataclass
class RayHead:
    address: str  # the job server, http://127.0.0.1:PORT
    token: str
    log: str
    gcs: str = ""  # the GCS, 127.0.0.1:PORT (what ray.init and `ferray search --address` take)
    node_logs: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()[-3000:]
    except OSError:
        return ""


class _Nodes:
    """The ``ray start --block`` processes of one cluster; :meth:`stop` ends them within a bounded wait."""

    def __init__(self, token: str):
        self.token = token
        self.procs: list[tuple[subprocess.Popen, str, str]] = []  # (process, temp dir, log)

    def start(self, args: list[str]) -> str:
        tmp = tempfile.mkdtemp(prefix="ferray-node-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        # No drain on SIGTERM: Ray 2.60 otherwise waits up to 30 s for a node with nothing left to drain.
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }
        for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
            env.pop(var, None)
        cmd = [
            "ray",
            "start",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            *args,
            "--dashboard-agent-listen-port",
            str(_free_port()),
            "--metrics-export-port",
            str(_free_port()),
            "--temp-dir",
            tmp,
            "--disable-usage-stats",
        ]
        log = os.path.join(tmp, "ray-start.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((proc, tmp, log))
        return log

    def check_alive(self, what: str, waited: float) -> None:
        for proc, _, log in self.procs:
            if proc.poll() is not None:
                pytest.fail(
                    f"{what}: a `ray start` exited ({proc.returncode}) after {waited:.0f} s; see {log}:\n" + _tail(log)
                )

    def stop(self) -> None:
        for proc, _, _ in self.procs:  # all at once: a node drains for up to 30 s, the waits overlap
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc, _, _ in self.procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        for _, tmp, _ in self.procs:
            shutil.rmtree(tmp, ignore_errors=True)


def _get(url: str, token: str):
    import requests

    try:
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2)
    except requests.RequestException:
        return None


def _start_cluster(nodes: _Nodes, head_args: list[str], workers: list[list[str]]) -> RayHead:
    """Start the head, wait for its job server, start the other nodes and wait until all are alive."""
    dash, gcs = _free_port(), _free_port()
    log = nodes.start(
        [
            "--head",
            "--port",
            str(gcs),
            "--include-dashboard",
            "true",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dash),
            *head_args,
        ]
    )
    address = f"http://127.0.0.1:{dash}"
    start = time.monotonic()
    while not ((r := _get(f"{address}/api/version", nodes.token)) is not None and r.status_code == 200):
        nodes.check_alive("the Ray head's job server", time.monotonic() - start)
        if time.monotonic() - start > 120:
            pytest.fail(f"the Ray head's job server did not answer within 120 s; see {log}:\n{_tail(log)}")
        time.sleep(1)
    head = RayHead(address=address, token=nodes.token, log=log, gcs=f"127.0.0.1:{gcs}")
    for args in workers:
        head.node_logs.append(nodes.start(["--address", head.gcs, *args]))
    want, start = 1 + len(workers), time.monotonic()
    while True:
        r = _get(f"{address}/nodes?view=summary", nodes.token)
        alive = 0
        if r is not None and r.status_code == 200:
            alive = sum(1 for n in r.json()["data"]["summary"] if n.get("raylet", {}).get("state") == "ALIVE")
        if alive >= want:
            return head
        nodes.check_alive(f"waiting for {want} alive nodes (have {alive})", time.monotonic() - start)
        if time.monotonic() - start > 90:
            pytest.fail(f"{want} Ray nodes were not alive within 90 s (have {alive}); see " + ", ".join(head.node_logs))
        time.sleep(1)


@pytest.fixture(scope="module")
def ray_head():
    """One head node (1 CPU) with its job server, on its own ports and temp dir."""
    nodes = _Nodes(secrets.token_hex(24))
    try:
        yield _start_cluster(nodes, ["--num-cpus", "1"], [])
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def ray_two_nodes():
    """A head and a second node, 1 CPU and 1 declared GPU each."""
    nodes = _Nodes(secrets.token_hex(24))
    try:
        yield _start_cluster(nodes, ["--num-cpus", "1", "--num-gpus", "1"], [["--num-cpus", "1", "--num-gpus", "1"]])
    finally:
        nodes.stop()


@pytest.fixture
def token_env(monkeypatch, tmp_path):
    """``use(head)``: this process talks to ``head`` with its token from ``RAY_AUTH_TOKEN`` only; returns ``head``."""

    def use(head: RayHead) -> RayHead:
        for var in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of this machine's other Ray
        monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
        return head

    return use
