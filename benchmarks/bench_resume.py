"""Work lost per interruption and resume start-up time, on real processes.

Runs a small sweep (`ferray search`) in a subprocess, SIGKILLs the whole process tree
(driver, Ray, trial drivers, fold workers) a few times at random moments while trials
train, resumes with `ferray resume` each time, and prints:

* epochs recomputed per interruption: epochs the fold workers trained again (from the
  trials' ``epochs.jsonl``, which logs every epoch trained);
* resume start-up: seconds from launching ``ferray resume`` to the first epoch trained
  after it, next to the same figure for the fresh ``ferray search`` (Ray start, Tune
  restore, worker-group start and one epoch).

    python benchmarks/bench_resume.py [--kills 3] [--seed 0]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferray.testing import kill_tree  # noqa: E402

SPEC = """\
name: bench-resume
data: {{source: "synthetic:basic7?count=700&size=48&seed=0"}}
folds: {{k: 2, seed: 0, holdout: 0.1}}
model: {{backbone: resnet10t, pretrained: false}}
augment: {{strength: 0.2, tta: []}}
run: {{batch_size: 64, amp: "off", channels_last: false}}
space:
  optim.lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
budget: {{trials: {trials}, max_epochs: {epochs}, grace_period: 2, reduction_factor: 2, max_concurrent: 2}}
search: {{sampler: tpe, seed: {seed}}}
"""


def _ledger(run: Path) -> list[tuple[str, int, float]]:
    out = []
    for path in run.glob("*/epochs.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out.append((path.parent.name, d["epoch"], d["time"]))
    return out


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ferray.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    return proc, time.time()


def _first_epoch_after(run: Path, since: float, proc: subprocess.Popen, timeout: float = 600) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        times = [t for _, _, t in _ledger(run) if t > since]
        if times:
            return min(times) - since
        time.sleep(0.2)
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="keep the run and its log here (default: a temporary folder)")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work or tmp)
        root.mkdir(parents=True, exist_ok=True)
        spec = root / "spec.yaml"
        spec.write_text(SPEC.format(trials=args.trials, epochs=args.epochs, seed=args.seed))
        run, log = root / "runs" / "bench", root / "log.txt"
        proc, t0 = _start(["search", str(spec), "--storage", str(root / "runs"), "--name", "bench", "--no-live",
                           "--num-cpus", "2"], log)
        startups = {"search": _first_epoch_after(run, t0, proc)}
        resumes: list[float] = []
        starts: list[float] = []
        for _ in range(args.kills):
            time.sleep(rng.uniform(2.0, 12.0))  # a random moment while trials train
            if proc.poll() is not None:
                break
            kill_tree(proc)
            time.sleep(2)
            proc, t = _start(["resume", str(run), "--no-live", "--num-cpus", "2"], log)
            starts.append(t)
            first = _first_epoch_after(run, t, proc)
            if first is not None:
                resumes.append(first)
        code = proc.wait()
        if code != 0:
            print(f"the last `ferray resume` exited {code}; its output:\n{log.read_text()[-3000:]}")
        ledger = _ledger(run)
        total, distinct = len(ledger), len({(t, e) for t, e, _ in ledger})
        recomputed = []  # per interruption: epochs trained after the resume that were trained before it
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else float("inf")
            before = {(tr, e) for tr, e, tt in ledger if tt < start}
            recomputed.append(sum(1 for tr, e, tt in ledger if start <= tt < end and (tr, e) in before))
        print(f"resume benchmark: {args.trials} trials x up to {args.epochs} epochs (resnet10t, 630 images, k=2, "
              f"2 at once), {len(resumes)} SIGKILLs of the whole process tree; last exit code {code}")
        print(f"  epochs recomputed per interruption: {recomputed} (mean "
              f"{statistics.mean(recomputed) if recomputed else float('nan'):.2f}); epochs trained "
              f"{total}, distinct {distinct}")
        print(f"  start-up to the first epoch: fresh search {startups['search']:.1f} s; resume "
              + ", ".join(f"{s:.1f}" for s in resumes) + " s"
              + (f" (mean {statistics.mean(resumes):.1f} s)" if resumes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
