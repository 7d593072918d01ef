"""Multi-objective search against one-metric search: hypervolume of the (accuracy, cost) front.

Three sweeps per seed over the quickstart space and data (the packaged spec ``ferray search``
runs with no file: 1,400 synthetic 48x48 faces, 7 emotions, k=2, lr x backbone x loss), with
the same trial count and ``max_epochs``:

* ``mo_asha``  multi-objective ASHA + multi-objective TPE, objectives accuracy (max) and
  ``latency_ms`` (min);
* ``random``   random search, every trial trained to ``max_epochs`` (no early stopping);
* ``asha_acc`` ASHA + TPE on accuracy alone (a one-metric sweep, ferray's default).

Every trial records its cost (``params``, ``macs``, ``latency_ms``) whatever the objectives,
so the fronts of the one-metric sweeps are computed afterwards from their ``results.parquet``,
the same way ``ferray status`` computes them: over completed and pruned trials, a trial's
fold-mean accuracy at its best epoch against its cost. A pruned trial of a one-metric sweep
has no latency (only a latency objective times the fresh model) and so is on no latency front.

For each sweep it prints the hypervolume (:func:`ferray.run.pareto.hypervolume_2d`) of
(accuracy, latency_ms) and, as latency is noisy on a shared machine, of (accuracy, MACs),
which is deterministic; and the epochs consumed (the sum over trials of the epochs each
trained). The reference point is fixed for the whole benchmark and printed: chance accuracy
(1/7) and 1.1 x the worst latency / MACs of any trial of any sweep. Target: ``mo_asha``'s
hypervolume >= both others' at <= 1/2 of ``random``'s epochs. Only the sweeps run (no
ensemble, distillation or export, like ``ferray search --no-finish``), into a temporary folder.

    python benchmarks/bench_multi_objective.py --quick          # 1 seed, 4 trials x 2 epochs
    python benchmarks/bench_multi_objective.py --seeds 3        # 12 trials x 6 epochs per sweep

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferray.run.pareto import hypervolume_2d  # noqa: E402
from ferray.run.results import read_results  # noqa: E402
from ferray.run.sections import Objective  # noqa: E402
from ferray.run.status import PARETO_STATES, summarise_trials  # noqa: E402
from ferray.search import SearchSpec, packaged_spec, run_search  # noqa: E402

#: name -> (sampler, early stopping, objectives or None for the one metric)
STRATEGIES = {
    "mo_asha": (
        "tpe",
        True,
        [{"metric": "accuracy", "direction": "max"}, {"metric": "latency_ms", "direction": "min"}],
    ),
    "random": ("random", False, None),
    "asha_acc": ("tpe", True, None),
}
CHANCE = 1 / 7  # the quickstart data's 7 emotions
COSTS = ("latency_ms", "macs")


def make_spec(
    strategy: str, seed: int, *, trials: int, max_epochs: int, grace_period: int, reduction_factor: int = 2
) -> SearchSpec:
    """The packaged quickstart spec with this strategy's search and budget."""
    sampler, early_stopping, objectives = STRATEGIES[strategy]
    raw = yaml.safe_load(packaged_spec("quickstart").read_text())
    raw["name"] = f"bench-mo-{strategy}-{seed}"
    raw["budget"].update(
        trials=trials,
        max_epochs=max_epochs,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        early_stopping=early_stopping,
    )
    raw["search"].update(sampler=sampler, seed=seed, n_startup_trials=max(2, trials // 4))
    if objectives:
        raw["search"]["objectives"] = objectives
    raw["ensemble"]["enabled"] = False
    raw["ensemble"]["export"] = False
    return SearchSpec.model_validate(raw)


def trial_points(results_path: Path) -> tuple[list[dict], int, list]:
    """The ended trials' (accuracy, latency_ms, macs), the epochs all trials trained, latency threads."""
    rows = read_results(results_path)
    objectives = [Objective(metric="accuracy"), *(Objective(metric=c) for c in COSTS)]
    trials = summarise_trials(rows, "accuracy", "max", objectives)
    epochs = sum(t["epochs"] for t in trials)
    ended = [t["objectives"] | {"state": t["state"]} for t in trials if t["state"] in PARETO_STATES]
    threads = sorted({r["latency_threads"] for r in rows if r.get("latency_threads") is not None})
    return ended, epochs, threads


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def hypervolumes(entry: dict, reference: dict[str, float]) -> dict[str, float]:
    return {
        cost: hypervolume_2d(
            [[p["accuracy"], p[cost]] for p in entry["points"]], [CHANCE, reference[cost]], ["max", "min"]
        )
        for cost in COSTS
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 seed, 4 trials x 2 epochs per sweep")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (each: one sweep per strategy)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--grace-period", type=int, default=1)
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA keeps 1/N of the trials at each rung")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--work", default=None, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.max_epochs = 1, 4, 2

    from ferray.runtime.startup import ensure_ray

    command = "python benchmarks/bench_multi_objective.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()
    print(f"$ {command}")
    print(
        f"multi-objective benchmark: quickstart space and data, {args.seeds} seed(s) x {len(STRATEGIES)} sweeps of "
        f"{args.trials} trials x {args.max_epochs} epochs "
        f"(ASHA grace {args.grace_period}, reduction {args.reduction_factor}); "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start",
        flush=True,
    )
    ensure_ray(num_cpus=args.num_cpus, log_to_driver=False)
    runs: dict[int, dict[str, dict]] = {}
    threads: set = set()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work or tmp)
        for seed in range(args.seeds):
            for strategy in STRATEGIES:
                spec = make_spec(
                    strategy,
                    seed,
                    trials=args.trials,
                    max_epochs=args.max_epochs,
                    grace_period=args.grace_period,
                    reduction_factor=args.reduction_factor,
                )
                t = time.perf_counter()
                result = run_search(spec, run_dir=root / f"{strategy}-{seed}", live=False, echo=lambda s: None)
                wall = time.perf_counter() - t
                points, epochs, used = trial_points(result.results_path)
                threads.update(used)
                runs.setdefault(seed, {})[strategy] = {"points": points, "epochs": epochs, "wall_s": wall}
                print(
                    f"  seed {seed} {strategy:8s}: {len(points)} ended trials, {epochs} epochs, {wall:.0f} s",
                    flush=True,
                )
    every = [p for by in runs.values() for e in by.values() for p in e["points"]]
    reference = {c: 1.1 * max((p[c] for p in every if _finite(p[c])), default=1.0) for c in COSTS}
    load = os.getloadavg()
    print(
        f"\nreference point: accuracy {CHANCE:.4f} (chance), latency_ms {reference['latency_ms']:.3f}, "
        f"MACs {reference['macs']:.4g} (1.1 x the worst of any trial); latency timed with "
        f"{', '.join(str(t) for t in sorted(threads)) or '?'} torch thread(s); load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    header = "  sweep    " + " ".join(f"{c:>16s}" for c in ("HV acc x latency", "HV acc x MACs"))
    header += f" {'epochs':>7s} {'best acc':>8s} {'wall s':>7s}"
    table: dict[str, list[dict]] = {s: [] for s in STRATEGIES}
    for seed, by in runs.items():
        print(f"\nseed {seed}:\n{header}")
        for strategy, entry in by.items():
            hv = hypervolumes(entry, reference)
            best = max((p["accuracy"] for p in entry["points"] if _finite(p["accuracy"])), default=float("nan"))
            table[strategy].append({**hv, "epochs": entry["epochs"], "best": best, "wall_s": entry["wall_s"]})
            print(
                f"  {strategy:8s} {hv['latency_ms']:16.4f} {hv['macs']:16.4g} {entry['epochs']:7d} {best:8.4f} "
                f"{entry['wall_s']:7.0f}"
            )
        m, a, b = (hypervolumes(by[s], reference) for s in STRATEGIES)
        ratio = by["mo_asha"]["epochs"] / max(by["random"]["epochs"], 1)
        print(
            f"  target mo_asha HV >= random and asha_acc at <= 0.5 x random's epochs: latency "
            f"{'met' if m['latency_ms'] >= max(a['latency_ms'], b['latency_ms']) else 'NOT met'}, MACs "
            f"{'met' if m['macs'] >= max(a['macs'], b['macs']) else 'NOT met'}, epochs {ratio:.2f} x random "
            f"({'met' if ratio <= 0.5 else 'NOT met'})"
        )
    print(f"\nmean over {len(runs)} seed(s):\n{header}")
    for strategy, entries in table.items():
        mean = {k: statistics.mean(e[k] for e in entries) for k in entries[0]}
        print(
            f"  {strategy:8s} {mean['latency_ms']:16.4f} {mean['macs']:16.4g} {mean['epochs']:7.1f} "
            f"{mean['best']:8.4f} {mean['wall_s']:7.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
