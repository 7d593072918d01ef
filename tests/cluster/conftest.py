"""A real Ray head with its job server, on loopback, with token authentication: started once, always stopped."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest


@dataclass
class RayHead:
    address: str  # the job server, http://127.0.0.1:PORT
    token: str
    log: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` in its own process group, ports and temp dir (other Ray instances on
    this machine are left alone); SIGTERM makes it stop every process it started."""
    import requests

    tmp = tempfile.mkdtemp(prefix="ferray-head-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(24)
    dash = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(var, None)
    cmd = ["ray", "start", "--head", "--block", "--num-cpus", "1", "--port", str(_free_port()),
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--dashboard-agent-listen-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
           "--temp-dir", tmp, "--disable-usage-stats"]
    log = os.path.join(tmp, "ray-start.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = requests.get(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}, timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log) as f:
                    tail = f.read()[-3000:]
                pytest.fail(f"the Ray head did not start within 120 s (exit {proc.poll()}); see {log}:\n{tail}")
            time.sleep(1)
        yield RayHead(address=address, token=token, log=log)
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started, then exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
