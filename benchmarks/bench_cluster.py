"""A sweep submitted to a real Ray cluster on this machine: one node, then two.

Starts a token-protected Ray cluster on loopback (``ray start --head`` with its job server,
plus, the second time, a node that joins it, each with its own ports and temp dir), submits
the same small sweep with ``ferray submit --wait --no-finish --storage DIR``, and prints:

* first report: seconds from launching ``ferray submit`` to the first trial's first epoch
  report (the ``time`` of the first line in the trials' ``epochs.jsonl``, written when rank 0
  reports its first epoch): job upload and start, the driver's Ray and Tune start, the
  trial's worker group, and one epoch;
* sweep wall: seconds from launching ``ferray submit`` to its exit after the job SUCCEEDED;
* where the fold workers ran (the distinct Ray node ids in the trials' ``metrics.json``).

Both clusters have the same CPUs in all (``--cpus``, default 2: one node of 2, or two of 1).
On one machine the two nodes share its cores, so the two-node figures check placement and
the cost of a second raylet, not a speed-up.

    python benchmarks/bench_cluster.py [--cpus 2] [--trials 2] [--epochs 2]

Prints figures; asserts nothing. Stops every node it started, however it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
name: bench-cluster
data: {{source: "synthetic:basic7?count=400&size=48&seed=0&difficulty=0.2"}}
folds: {{k: 2, seed: 0, holdout: 0.15}}
model: {{backbone: test_resnet, pretrained: false}}
augment: {{strength: 0.1, tta: []}}
run: {{batch_size: 64, amp: "off", channels_last: false}}
resources: {{placement: spread}}
space:
  optim.lr: {{type: float, low: 1.0e-3, high: 3.0e-2, log: true}}
budget: {{trials: {trials}, max_epochs: {epochs}, grace_period: {epochs}, max_concurrent: 1}}
search: {{sampler: random, seed: 0}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``ray start --block`` nodes on loopback; :meth:`stop` ends them (SIGTERM, then SIGKILL after 60 s)."""

    def __init__(self, token: str):
        self.token = token
        self.procs: list[tuple[subprocess.Popen, str]] = []
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }  # stop at once, no 30 s drain
        for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
            self.env.pop(var, None)

    def _node(self, args: list[str]) -> None:
        tmp = tempfile.mkdtemp(prefix="ferray-bench-node-", dir="/tmp")
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
        with open(os.path.join(tmp, "ray-start.log"), "w") as out:
            self.procs.append(
                (subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True), tmp)
            )

    def _get(self, path: str):
        import requests

        try:
            r = requests.get(f"{self.address}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=2)
            return r if r.status_code == 200 else None
        except requests.RequestException:
            return None

    def _wait(self, what: str, ready, limit: float = 120) -> None:
        start = time.monotonic()
        while not ready():
            if time.monotonic() - start > limit or any(p.poll() is not None for p, _ in self.procs):
                raise RuntimeError(
                    f"{what}: not ready within {limit:.0f} s (or a `ray start` exited); see the "
                    f"logs under {', '.join(t for _, t in self.procs)}"
                )
            time.sleep(1)

    def start(self, cpus: list[int]) -> None:
        gcs, dash = _free_port(), _free_port()
        self.address, self.gcs = f"http://127.0.0.1:{dash}", f"127.0.0.1:{gcs}"
        self._node(
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
                "--num-cpus",
                str(cpus[0]),
            ]
        )
        self._wait("the head's job server", lambda: self._get("/api/version") is not None)
        for n in cpus[1:]:
            self._node(["--address", self.gcs, "--num-cpus", str(n)])

        def alive() -> bool:
            r = self._get("/nodes?view=summary")
            return r is not None and sum(x["raylet"]["state"] == "ALIVE" for x in r.json()["data"]["summary"]) >= len(
                cpus
            )

        self._wait(f"{len(cpus)} alive nodes", alive, limit=90)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        for _, tmp in self.procs:
            shutil.rmtree(tmp, ignore_errors=True)


def _first_report(run: Path) -> float | None:
    times = []
    for log in run.glob("*/epochs.jsonl"):
        lines = log.read_text().splitlines()
        if lines:
            times.append(json.loads(lines[0])["time"])
    return min(times) if times else None


def _fold_nodes(run: Path) -> set[str]:
    ids = set()
    for metrics in run.glob("*/metrics.json"):
        ids.update(f["node_id"] for f in json.loads(metrics.read_text()).get("fold_nodes", []))
    return ids


def one(cpus: list[int], spec: Path, work: Path, timeout: float) -> dict:
    cluster = Cluster(secrets.token_hex(24))
    name = f"n{len(cpus)}"
    try:
        t = time.monotonic()
        cluster.start(cpus)
        cluster_start = time.monotonic() - t
        env = {**cluster.env, "HOME": str(work), "PYTHONPATH": str(REPO)}
        t0 = time.time()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ferray.cli",
                "submit",
                str(spec),
                "--address",
                cluster.address,
                "--storage",
                str(work / "store"),
                "--name",
                name,
                "--wait",
                "--no-finish",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=timeout,
            check=False,
        )
        wall = time.time() - t0
    finally:
        cluster.stop()
    run = work / "store" / name
    first = _first_report(run)
    status = (done.stdout.strip().splitlines() or ["?"])[-1]
    return {
        "nodes": len(cpus),
        "cpus": "+".join(map(str, cpus)),
        "cluster_start_s": cluster_start,
        "first_report_s": (first - t0) if first else float("nan"),
        "wall_s": wall,
        "fold_nodes": len(_fold_nodes(run)),
        "ok": done.returncode == 0,
        "status": status,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the cluster in all (default 2)")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600, help="seconds one `ferray submit --wait` may take")
    args = p.parse_args(argv)
    if args.cpus < 2:
        p.error("--cpus must be >= 2 (two nodes of at least one CPU)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ferray-bench-cluster-") as tmp:
        work = Path(tmp)
        spec = work / "bench-cluster.yaml"
        spec.write_text(SPEC.format(trials=args.trials, epochs=args.epochs))
        for cpus in ([args.cpus], [args.cpus - args.cpus // 2, args.cpus // 2]):
            row = one(cpus, spec, work, args.timeout)
            rows.append(row)
            if not row["ok"]:
                print(f"{row['nodes']} node(s): the job did not succeed: {row['status']}", file=sys.stderr)
    print(
        f"ferray submit --wait: {args.trials} trials x 2 folds x {args.epochs} epochs, one trial at a time, "
        f"{args.cpus} CPUs in all"
    )
    print(
        f"{'nodes':>5}  {'CPUs':>5}  {'cluster start':>13}  {'first report':>12}  {'sweep wall':>10}  "
        f"{'nodes with fold workers':>23}"
    )
    for r in rows:
        print(
            f"{r['nodes']:>5}  {r['cpus']:>5}  {r['cluster_start_s']:>12.1f}s  {r['first_report_s']:>11.1f}s  "
            f"{r['wall_s']:>9.1f}s  {r['fold_nodes']:>23}"
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
