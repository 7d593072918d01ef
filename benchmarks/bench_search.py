"""Search efficiency on a CPU-sized FER2013 subset, and the overhead of a sweep.

Three strategies on the same data and fold plan, each with several seeds:

* ``asha_tpe``   Optuna TPE + ASHA early stopping (what ``ferray search`` does);
* ``random_full`` random search, every trial trained to ``max_epochs``;
* ``tpe_full``   TPE without early stopping.

For each sweep the best fold-mean accuracy reached so far is traced against the epochs
spent (every epoch of every trial counts, in the order results arrived); strategies are
compared at the same epoch budget (the smallest total any sweep spent). Also reported: a
sweep's wall time against the sum of its trials' compute (``epoch_seconds``): the gap is
Ray worker-group start-up and scheduling.

    python benchmarks/bench_search.py --quick          # ~25 min on 2 CPUs
    python benchmarks/bench_search.py --seeds 0 1 2 --images 2000 --out bench_search.json

Needs ../shared/datasets/fer2013 (class folders); falls back to synthetic data with a
warning when it is absent (``--data synthetic`` forces that).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FER2013 = REPO.parent / "shared" / "datasets" / "fer2013"
STRATEGIES = {
    "asha_tpe": {"sampler": "tpe", "early_stopping": True},
    "random_full": {"sampler": "random", "early_stopping": False},
    "tpe_full": {"sampler": "tpe", "early_stopping": False},
}


def prepare_subset(images: int, cache: Path, seed: int = 0, data: str = "fer2013") -> str:
    """A stratified random subset of FER2013's train split as a prepared Parquet file."""
    import numpy as np

    from ferray.data import load_source, write_parquet

    out = cache / f"{data}-{images}-{seed}.parquet"
    if out.is_file():
        return str(out)
    cache.mkdir(parents=True, exist_ok=True)
    if data == "fer2013" and FER2013.is_dir():
        full = load_source(str(FER2013 / "train"), size=48, channels=1)
    else:
        print(f"warning: {FER2013} not found; using synthetic data", file=sys.stderr)
        full = load_source(f"synthetic:basic7?count={images}&size=48&seed={seed}")
    rng = np.random.default_rng(seed)
    per_class = max(1, images // full.num_classes)
    keep = []
    for c in range(full.num_classes):
        rows = np.flatnonzero(full.labels == c)
        keep.extend(rng.choice(rows, size=min(per_class, len(rows)), replace=False).tolist())
    subset = full.subset(np.sort(np.asarray(keep)))
    write_parquet(subset, out)
    return str(out)


def make_spec(source: str, strategy: str, seed: int, *, trials: int, max_epochs: int, k: int):
    from ferray.search import SearchSpec

    s = STRATEGIES[strategy]
    return SearchSpec.model_validate(
        {
            "name": f"bench-{strategy}-{seed}",
            "data": {"source": source},
            "folds": {"k": k, "seed": 0, "holdout": "none"},
            "model": {"backbone": "resnet10t", "pretrained": False},
            "augment": {"strength": 0.3, "tta": []},
            "run": {"batch_size": 64, "amp": "off", "channels_last": False, "metric": "accuracy"},
            "space": {
                "optim.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                "optim.weight_decay": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                "model.backbone": {"type": "categorical", "choices": ["resnet10t", "mobilenetv3_small_050"]},
                "loss.name": {"type": "categorical", "choices": ["ce", "label_smoothing"]},
            },
            "budget": {
                "trials": trials,
                "max_epochs": max_epochs,
                "grace_period": 1,
                "reduction_factor": 2,
                "early_stopping": s["early_stopping"],
                "max_concurrent": 2,
            },
            "search": {"sampler": s["sampler"], "seed": seed, "n_startup_trials": max(2, trials // 3)},
        }
    )


def trace(results_path: Path) -> list[tuple[int, float]]:
    """(cumulative epochs, best fold-mean accuracy so far) in arrival order."""
    from ferray.run.results import read_results

    rows = [r for r in read_results(results_path) if r.get("epoch") is not None and r.get("metric") is not None]
    rows.sort(key=lambda r: r["timestamp"])
    best, out = float("-inf"), []
    for i, r in enumerate(rows, 1):
        best = max(best, r["metric"])
        out.append((i, best))
    return out


def best_at(curve: list[tuple[int, float]], epochs: int) -> float:
    value = float("nan")
    for spent, best in curve:
        if spent > epochs:
            break
        value = best
    return value


def epochs_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The epochs a sweep spent before its best first reached ``target`` (None: never)."""
    for spent, best in curve:
        if best >= target:
            return spent
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 seeds, 3 epochs, small trial counts (~25 min)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--full-trials", type=int, default=4, help="trials of the full-training strategies")
    p.add_argument("--asha-trials", type=int, default=8, help="trials of ASHA+TPE (pruning frees epochs)")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--data", choices=["fer2013", "synthetic"], default="fer2013")
    p.add_argument("--work", default="/tmp/ferray-bench-search", help="cache and run directories")
    p.add_argument("--out", default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.max_epochs, args.full_trials, args.asha_trials = 1400, 3, 3, 5

    import ray

    from ferray.search import run_search

    work = Path(args.work)
    source = prepare_subset(args.images, work / "cache", data=args.data)
    ray.init(num_cpus=None, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    runs: dict[str, list[dict]] = {s: [] for s in args.strategies}
    for seed in args.seeds:
        for strategy in args.strategies:
            trials = args.asha_trials if STRATEGIES[strategy]["early_stopping"] else args.full_trials
            spec = make_spec(source, strategy, seed, trials=trials, max_epochs=args.max_epochs, k=args.k)
            run_dir = work / "runs" / f"{strategy}-{seed}-{int(time.time())}"
            t = time.perf_counter()
            result = run_search(spec, run_dir=run_dir, live=False, echo=lambda s: None)
            wall = time.perf_counter() - t
            curve = trace(result.results_path)
            compute = sum(tr["seconds"] for tr in result.status["trials"])
            entry = {
                "seed": seed,
                "wall_s": wall,
                "compute_s": compute,
                "epochs": curve[-1][0] if curve else 0,
                "best": curve[-1][1] if curve else float("nan"),
                "curve": curve,
                "counts": result.status["counts"],
                "run_dir": str(run_dir),
            }
            runs[strategy].append(entry)
            print(
                f"{strategy:12s} seed {seed}: best {entry['best']:.4f} after {entry['epochs']} epochs, "
                f"wall {wall:.0f}s, trial compute {compute:.0f}s, {entry['counts']}",
                flush=True,
            )
    budget = min(e["epochs"] for entries in runs.values() for e in entries)
    print(f"\nbest fold-mean accuracy at the same budget of {budget} epochs (mean ± std over seeds):")
    summary = {}
    for strategy, entries in runs.items():
        values = [best_at(e["curve"], budget) for e in entries]
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        wall = statistics.mean(e["wall_s"] for e in entries)
        compute = statistics.mean(e["compute_s"] for e in entries)
        summary[strategy] = {
            "best_at_budget_mean": mean,
            "best_at_budget_std": std,
            "values": values,
            "wall_s_mean": wall,
            "compute_s_mean": compute,
        }
        print(f"  {strategy:12s} {mean:.4f} ± {std:.4f}   wall {wall:.0f}s vs trial compute {compute:.0f}s")
    if "random_full" in runs:
        print("\nepochs to reach the random-search best of the same seed (target: at most 1/3 of random's):")
        for strategy in (s for s in runs if s != "random_full"):
            ratios = []
            for entry, ref in zip(runs[strategy], runs["random_full"]):
                reached = epochs_to_reach(entry["curve"], ref["best"])
                ratio = None if reached is None else reached / ref["epochs"]
                ratios.append(ratio)
                print(
                    f"  {strategy:12s} seed {entry['seed']}: random best {ref['best']:.4f} after {ref['epochs']} "
                    f"epochs; reached after {reached if reached is not None else 'never'}"
                    + ("" if ratio is None else f" ({ratio:.2f}x)")
                )
            summary[strategy]["epochs_ratio_to_random_best"] = ratios
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"budget_epochs": budget, "summary": summary, "runs": runs, "args": vars(args)}, indent=2, default=str
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
