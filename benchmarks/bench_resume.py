"""Interrupted sweeps against an uninterrupted one, work lost per interruption, resume start-up.

Runs a small sweep (`ferray search`, ensemble and bundle included) once straight through,
then, for each of ``--seeds`` seeds, the same sweep again with ``--kills`` SIGKILLs of the
whole process tree (driver, Ray, trial drivers, fold workers) at random moments drawn
uniformly over the straight run's wall time (trial start-ups, epochs, the moments between
trials and the ensemble/export stage alike), each followed by `ferray resume`. It prints:

* how many interrupted runs ended differently from the straight one (target 0): trial
  count against the budget, trials or Optuna trials left unfinished, parameters tried,
  the same score for every trial that trained start to end inside one process, a bundle
  (:func:`ferray.search._outcome.outcome_differences`), with each difference;
* epochs recomputed per interruption (from the trials' ``epochs.jsonl``, which logs every
  epoch trained);
* resume start-up: seconds from launching ``ferray resume`` to the first epoch trained after it.

    python benchmarks/bench_resume.py [--seeds 10] [--kills 2] [--trials 3] [--epochs 3]

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

from ferray.search._outcome import outcome_differences, sweep_outcome, trained_in_one_process  # noqa: E402
from ferray.testing import kill_tree  # noqa: E402

SPEC = """\
name: bench-resume
data: {{source: "synthetic:basic7?count=420&size=48&seed=0&difficulty=0.2"}}
folds: {{k: 2, seed: 0, holdout: 0.15}}
model: {{backbone: test_resnet, pretrained: false}}
augment: {{strength: 0.0, tta: []}}
run: {{batch_size: 64, amp: "off", channels_last: false}}
space:
  optim.lr: {{type: float, low: 1.0e-3, high: 3.0e-2, log: true}}
budget: {{trials: {trials}, max_epochs: {epochs}, early_stopping: false, max_concurrent: 1}}
search: {{sampler: random, seed: 0}}
ensemble: {{enabled: true, top_k: 3, methods: [greedy, mean], export: true}}
distill: {{enabled: false}}
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
        out.write(f"\n$ ferray {' '.join(args)}\n".encode())
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferray.cli", *args, "--no-live", "--num-cpus", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc, time.time()


def _first_epoch_after(run: Path, since: float, proc: subprocess.Popen, timeout: float) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        times = [t for _, _, t in _ledger(run) if t > since]
        if times:
            return min(times) - since
        time.sleep(0.2)
    return None


def _interrupted(spec: Path, root: Path, reference, wall: float, kills: int, rng: random.Random) -> dict:
    run, log = root / "runs" / "bench", root / "log.txt"
    stops = [time.time()]
    proc, _ = _start(["search", str(spec), "--storage", str(root / "runs"), "--name", "bench"], log)
    at, resumes, kill_at = stops[0], [], []
    for _ in range(kills):
        delay = rng.uniform(0.0, wall)
        kill_at.append(round(delay, 1))
        deadline = at + delay
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:
            break  # the sweep had already ended
        kill_tree(proc)
        stops.append(time.time())
        time.sleep(1)
        proc, at = _start(["resume", str(run)], log)
        first = _first_epoch_after(run, at, proc, timeout=300)
        if first is not None:
            resumes.append(first)
    code = proc.wait(timeout=1800)
    ledger = _ledger(run)
    recomputed = []
    for i, stop in enumerate(stops[1:], 1):
        until = stops[i + 1] if i + 1 < len(stops) else float("inf")
        before = {(t, e) for t, e, when in ledger if when < stop}
        recomputed.append(sum(1 for t, e, when in ledger if stop < when < until and (t, e) in before))
    if code != 0:
        differences = [f"the last ferray command exited {code}; see {log}"]
    else:
        differences = outcome_differences(
            reference, sweep_outcome(run), compare_scores=trained_in_one_process(run, stops)
        )
    return {
        "kills_at_s": kill_at,
        "kills": len(stops) - 1,
        "differences": differences,
        "recomputed": recomputed,
        "resume_startup_s": resumes,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="interrupted runs, one per seed of the kill times")
    p.add_argument("--kills", type=int, default=2, help="SIGKILLs per interrupted run")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--work", default=None, help="keep the runs and their logs here (default: a temporary folder)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work or tmp)
        root.mkdir(parents=True, exist_ok=True)
        spec = root / "spec.yaml"
        spec.write_text(SPEC.format(trials=args.trials, epochs=args.epochs))
        proc, t0 = _start(
            ["search", str(spec), "--storage", str(root / "straight"), "--name", "bench"], root / "straight.txt"
        )
        fresh = _first_epoch_after(root / "straight" / "bench", t0, proc, timeout=600)
        if proc.wait(timeout=1800) != 0:
            print(f"the uninterrupted sweep failed; see {root / 'straight.txt'}")
            return 1
        wall = time.time() - t0
        reference = sweep_outcome(root / "straight" / "bench")
        print(
            f"resume benchmark: {args.trials} trials x {args.epochs} epochs (test_resnet, 420 images, k=2, one "
            f"at a time, ensemble + bundle); uninterrupted run {wall:.0f} s, first epoch after {fresh:.1f} s"
        )
        runs = []
        for seed in range(args.seeds):
            work = root / f"seed{seed}"
            work.mkdir()
            r = _interrupted(spec, work, reference, wall, args.kills, random.Random(seed))
            runs.append(r)
            verdict = "same" if not r["differences"] else "DIFFERENT: " + "; ".join(r["differences"])
            print(
                f"  seed {seed}: kills at {r['kills_at_s']} s ({r['kills']} landed), epochs recomputed "
                f"{r['recomputed']}: {verdict}",
                flush=True,
            )
        differed = sum(1 for r in runs if r["differences"])
        recomputed = [n for r in runs for n in r["recomputed"]]
        resumes = [s for r in runs for s in r["resume_startup_s"]]
        print(
            f"  {differed} of {len(runs)} interrupted runs ended differently from the uninterrupted one "
            f"({sum(r['kills'] for r in runs)} kills in all)"
        )
        if recomputed:
            print(
                f"  epochs recomputed per interruption: mean {statistics.mean(recomputed):.2f}, max {max(recomputed)}"
            )
        if resumes:
            print(
                f"  resume start-up to the first epoch: median {statistics.median(resumes):.1f} s "
                f"(fresh search {fresh:.1f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
