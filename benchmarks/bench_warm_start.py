"""What a warm start saves: a sweep started from an earlier one, against a cold one.

Two comparisons, each printed with its figures:

* **same data** (ferray's synthetic default faces): a first, cold sweep; then a second sweep on
  the same data and spec with ``warm_start`` pointing at the first (its finished trials seed
  the sampler). Printed: the epochs the second sweep spends before its best fold-mean accuracy
  reaches the first sweep's best, against the epochs the first sweep spent in all (target:
  at most 1/3).
* **other data** (a FER2013 subset from ``$FERRAY_SHARED_DATA/fer2013``, after the synthetic
  first sweep): a warm sweep (the first sweep's best configurations, projected, evaluated
  first) against a cold one on the same spec; printed: each one's best fold-mean accuracy at
  the same budget of epochs, and over the whole sweep.

Epochs count every epoch of every trial, in the order results arrived (``results.parquet``).

    python benchmarks/bench_warm_start.py --quick         # ~30 min on 2 CPUs
    python benchmarks/bench_warm_start.py --trials 8 --max-epochs 6 --out bench_warm_start.json

Without FER2013 the cross-dataset part uses synthetic faces of another seed and difficulty
(said in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_search import best_at, epochs_to_reach, trace  # noqa: E402  (a sibling benchmark's curve helpers)

SYNTHETIC = "synthetic:basic7?count={images}&size=48&seed=0&difficulty=0.2"
OTHER_SYNTHETIC = "synthetic:basic7?count={images}&size=48&seed=7&difficulty=0.4"


def shared_data() -> Path:
    return Path(os.environ.get("FERRAY_SHARED_DATA") or REPO.parent / "shared" / "datasets")


def fer2013_subset(images: int, cache: Path, seed: int = 0) -> str | None:
    """A stratified subset of FER2013's train split as a prepared Parquet file; ``None`` without FER2013."""
    import numpy as np

    from ferray.data import load_source, write_parquet

    root = shared_data() / "fer2013"
    if not (root / "train").is_dir():
        return None
    out = cache / f"fer2013-{images}-{seed}.parquet"
    if out.is_file():
        return str(out)
    cache.mkdir(parents=True, exist_ok=True)
    full = load_source(str(root / "train"), size=48, channels=1)
    rng = np.random.default_rng(seed)
    per_class = max(1, images // full.num_classes)
    keep = []
    for c in range(full.num_classes):
        rows = np.flatnonzero(full.labels == c)
        keep.extend(rng.choice(rows, size=min(per_class, len(rows)), replace=False).tolist())
    write_parquet(full.subset(np.sort(np.asarray(keep))), out)
    return str(out)


def make_spec(name: str, source: str, *, trials: int, max_epochs: int, k: int, seed: int, batch_size: int = 32):
    from ferray.search import SearchSpec

    return SearchSpec.model_validate(
        {
            "name": name,
            "data": {"source": source},
            "folds": {"k": k, "seed": 0, "holdout": "none"},
            "model": {"backbone": "resnet10t", "pretrained": False},
            "augment": {"strength": 0.1, "tta": []},
            "run": {"batch_size": batch_size, "amp": "off", "channels_last": False, "metric": "accuracy"},
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
                "max_concurrent": 2,
            },
            "search": {"sampler": "tpe", "seed": seed, "n_startup_trials": max(2, trials // 2)},
        }
    )


def sweep(spec, work: Path, label: str, warm_start=()) -> dict:
    from ferray.search import run_search

    run_dir = work / "runs" / f"{label.replace(' (', '-').rstrip(')')}-{int(time.time())}"  # first-cold-<time>
    notes: list[str] = []
    t = time.perf_counter()
    result = run_search(
        spec, run_dir=run_dir, live=False, warm_start=list(warm_start), echo=lambda s: notes.append(str(s))
    )
    wall = time.perf_counter() - t
    curve = trace(result.results_path)
    entry = {
        "label": label,
        "run_dir": str(run_dir),
        "wall_s": wall,
        "epochs": curve[-1][0] if curve else 0,
        "best": curve[-1][1] if curve else float("nan"),
        "curve": curve,
        "counts": result.status["counts"],
        "warm_start": [n for n in notes if n.startswith(("warm start", "  trial"))],
    }
    print(
        f"{label:22s} best {entry['best']:.4f} after {entry['epochs']} epochs, wall {wall:.0f}s, {entry['counts']}",
        flush=True,
    )
    for line in entry["warm_start"]:
        print(f"    {line}", flush=True)
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 trials of 3 epochs per sweep (~30 min on 2 CPUs)")
    p.add_argument("--images", type=int, default=1400, help="images of each data set")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--max-epochs", type=int, default=6)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32, help="small batches: more steps per epoch on small data")
    p.add_argument("--seed", type=int, default=0, help="search seed of every sweep")
    p.add_argument("--skip-cross", action="store_true", help="only the same-data comparison")
    p.add_argument("--work", default="/tmp/ferray-bench-warm", help="cache and run directories")
    p.add_argument("--out", default=None, help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.max_epochs = 4, 3

    import ray

    work = Path(args.work)
    ray.init(num_cpus=None, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    shape = {
        "trials": args.trials,
        "max_epochs": args.max_epochs,
        "k": args.k,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    synthetic = SYNTHETIC.format(images=args.images)

    print("same data (synthetic default faces):", flush=True)
    first = sweep(make_spec("first", synthetic, **shape), work, "first (cold)")
    # Another sweep seed: the warm sweep's own random draws are not the first sweep's again.
    second_shape = {**shape, "seed": args.seed + 1}
    second = sweep(make_spec("second", synthetic, **second_shape), work, "second (warm)", [first["run_dir"]])
    reached = epochs_to_reach(second["curve"], first["best"])
    ratio = None if reached is None else reached / first["epochs"]
    print(
        f"\nthe second sweep reached the first sweep's best {first['best']:.4f} after "
        f"{reached if reached is not None else 'never (within its budget)'} epochs; the first spent "
        f"{first['epochs']}" + ("" if ratio is None else f" ({ratio:.2f}x; target <= 0.33)"),
        flush=True,
    )
    out: dict = {"args": vars(args), "same_data": {"first": first, "second": second, "epochs_to_reach": reached}}
    out["same_data"]["ratio"] = ratio

    if not args.skip_cross:
        other = fer2013_subset(args.images, work / "cache")
        what = "FER2013 subset"
        if other is None:
            other, what = OTHER_SYNTHETIC.format(images=args.images), "synthetic faces of another seed (no FER2013)"
        print(f"\nother data ({what}), warm from the synthetic first sweep vs cold:", flush=True)
        cold = sweep(make_spec("cross", other, **second_shape), work, "cross (cold)")
        warm = sweep(make_spec("cross", other, **second_shape), work, "cross (warm)", [first["run_dir"]])
        budget = min(cold["epochs"], warm["epochs"])
        at = {e["label"]: best_at(e["curve"], budget) for e in (cold, warm)}
        print(f"\nbest fold-mean accuracy at the same budget of {budget} epochs:", flush=True)
        for label, value in at.items():
            print(f"  {label:22s} {value:.4f}", flush=True)
        first_epochs = {e["label"]: e["curve"][0][1] if e["curve"] else float("nan") for e in (cold, warm)}
        print("best after the first epoch (the first configuration's first epoch):", flush=True)
        for label, value in first_epochs.items():
            print(f"  {label:22s} {value:.4f}", flush=True)
        out["cross"] = {"data": what, "cold": cold, "warm": warm, "budget": budget, "best_at_budget": at}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
