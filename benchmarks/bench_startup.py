"""Trial start-up: fold-worker imports, each trial's start-up breakdown, the quickstart's wall time.

    python benchmarks/bench_startup.py                 # everything, the packaged quickstart as shipped
    python benchmarks/bench_startup.py --quick         # 1 import repeat; quickstart cut to 2 trials x 2 epochs
    python benchmarks/bench_startup.py imports         # one of: imports sweep plain (sweep = the quickstart)

Prints figures; asserts nothing. The targets, each a ratio measured in the same run:

* imports: a fold worker's imports (what ``fold_worker`` loads besides Ray) against torch + timm +
  albumentations alone, each in fresh processes, interleaved (target <= 1.1x);
* sweep: ``ferray search`` on the quickstart spec (``--no-finish``, so the command ends at the
  summary). Per trial, the start-up the fold workers report in their first epoch (trial function
  entry -> first training step of the fold that started last) and its phases; the median
  (target <= 25 s on 2 CPUs); the wall time from command to summary against the sum of epoch
  seconds divided by the trials run at once (target <= 1.5x);
* plain: a plain Ray Tune function trainable that imports torch and timm and trains the same
  model on the same images, as many trials at once with the same CPUs per trial; its start-up
  (function entry -> first training step) next to ferray's (target: ferray <= 2x).

The machine's load average is printed with the figures: start-up is CPU work (imports), so on a
shared machine every figure grows with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: What the baseline process imports: the libraries a fold worker cannot do without.
BASELINE = "import torch, timm, albumentations"
#: What a fold worker imports besides Ray (``fold_worker``'s own imports, the dataset's class, and
#: what the last epoch uses to write predictions and weights).
FOLD_WORKER = (
    "import torch; import ferray.training._worker; from ferray.training._fold import FoldTrainer; "
    "import ferray.training.checkpoint, ferray.run.predictions, ferray.training.weights; "
    "import ferray.data._table"
)
HEAVY = ("sklearn", "optuna", "wandb", "tensorboard", "torch.utils.tensorboard", "pandas", "scipy")
PHASES = (
    "trial_setup_s",
    "worker_spawn_s",
    "worker_process_s",
    "import_s",
    "data_get_s",
    "model_build_s",
    "first_batch_s",
)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def _import_once(code: str) -> dict:
    probe = (
        f"import json, sys, time; t = time.perf_counter(); c = time.process_time(); {code}; "
        "print(json.dumps({'wall': time.perf_counter() - t, 'cpu': time.process_time() - c, "
        f"'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def imports(repeats: int) -> dict:
    """Median import wall/CPU seconds of a fold worker and of the baseline, fresh processes, interleaved."""
    runs: dict[str, list[dict]] = {"baseline": [], "fold_worker": []}
    _import_once("import torch, timm, albumentations")  # warm the page cache once; not counted
    for _ in range(repeats):
        runs["baseline"].append(_import_once(BASELINE))
        runs["fold_worker"].append(_import_once(FOLD_WORKER))
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu")} for name, rs in runs.items()}
    ratio = med["fold_worker"]["wall"] / med["baseline"]["wall"]
    cpu_ratio = med["fold_worker"]["cpu"] / med["baseline"]["cpu"]
    print(f"\n## imports, fresh processes, median of {repeats} ({_load()})")
    print(f"torch + timm + albumentations : {med['baseline']['wall']:6.2f} s wall, {med['baseline']['cpu']:6.2f} s CPU")
    print(
        f"fold worker                   : {med['fold_worker']['wall']:6.2f} s wall, "
        f"{med['fold_worker']['cpu']:6.2f} s CPU"
    )
    print(f"ratio (target <= 1.1x)        : {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (CPU varies less with load)")
    print(
        f"also loaded: baseline {runs['baseline'][-1]['heavy']}, fold worker {runs['fold_worker'][-1]['heavy']} "
        "(of sklearn, optuna, wandb, tensorboard, pandas, scipy; albumentations brings scipy)"
    )
    return {"imports": med, "ratio": ratio, "cpu_ratio": cpu_ratio}


def _quickstart_spec(work: Path, trials: int | None, epochs: int | None) -> Path:
    import yaml

    from ferray.search import packaged_spec

    raw = yaml.safe_load(packaged_spec("quickstart").read_text())
    if trials is not None:
        raw["budget"]["trials"] = trials
    if epochs is not None:
        raw["budget"]["max_epochs"] = epochs
        raw["budget"]["grace_period"] = min(raw["budget"]["grace_period"], epochs)
    raw["ensemble"]["enabled"] = False
    spec = work / "quickstart.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    return spec


def sweep(num_cpus: int, trials: int | None, epochs: int | None, work: Path) -> dict:
    """``ferray search`` on the quickstart (as a user runs it), then its start-up figures from results.parquet."""
    from ferray.run.results import read_results
    from ferray.search import load_search_spec
    from ferray.search._plan import plan_search_resources

    spec_path = _quickstart_spec(work, trials, epochs)
    spec = load_search_spec(spec_path)
    plan = plan_search_resources(spec, spec.folds.k, num_cpus)
    load_before = _load()
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferray.cli",
            "search",
            str(spec_path),
            "--storage",
            str(work),
            "--name",
            "quickstart",
            "--no-live",
            "--no-finish",
            "--num-cpus",
            str(num_cpus),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"ferray search exited with {proc.returncode}")
    rows = read_results(work / "quickstart" / "results.parquet")
    trials_seen: dict[str, dict] = {}
    for r in rows:
        if r.get("startup_s") is not None:
            trials_seen.setdefault(r["trial_id"], r)
    epoch_seconds = sum(r["epoch_seconds"] for r in rows if r.get("epoch_seconds") is not None)
    ideal = epoch_seconds / plan.concurrent_trials
    print(
        f"\n## ferray search, quickstart: {spec.budget.trials} trials x <= {spec.budget.max_epochs} epochs, "
        f"k={plan.k}, {plan.concurrent_trials} at once, {num_cpus} CPUs (before: {load_before}; after: {_load()})"
    )
    head = ["trial", "startup_s", *PHASES, "cpu_s", "heavy_modules"]
    print("  ".join(f"{h:>14}" for h in head))
    for trial_id, r in trials_seen.items():
        cells = [
            trial_id,
            *(f"{r.get(k):.1f}" if r.get(k) is not None else "-" for k in ("startup_s", *PHASES)),
            f"{r.get('startup_cpu_s', 0):.1f}",
            str(r.get("heavy_modules")),
        ]
        print("  ".join(f"{c:>14}" for c in cells))
    startups = [r["startup_s"] for r in trials_seen.values()]
    median = statistics.median(startups) if startups else float("nan")
    medians = {
        k: statistics.median(r[k] for r in trials_seen.values() if r.get(k) is not None)
        for k in PHASES
        if any(r.get(k) is not None for r in trials_seen.values())
    }
    print("median phases: " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()))
    print(f"start-up median (target <= 25 s): {median:.1f} s over {len(startups)} trials")
    print(
        f"wall, command to summary: {wall:.0f} s; epochs: {epoch_seconds:.0f} s / {plan.concurrent_trials} at once "
        f"= {ideal:.0f} s; ratio (target <= 1.5x): {wall / max(ideal, 1e-9):.2f}x"
    )
    return {
        "startup_median_s": median,
        "phases": medians,
        "wall_s": wall,
        "ideal_s": ideal,
        "ratio": wall / max(ideal, 1e-9),
        "concurrent": plan.concurrent_trials,
        "trial_cpus": plan.trial_cpus,
        "heavy": sorted({m for r in trials_seen.values() for m in (r.get("heavy_modules") or [])}),
    }


def plain_trial(config: dict, images=None, labels=None) -> None:
    """A plain Tune function trainable: imports torch and timm, trains one model, reports its start-up."""
    import time

    entered = time.time()
    import numpy as np
    import timm
    import torch
    from ray import tune

    imported = time.time()
    torch.set_num_threads(max(1, int(config["threads"])))
    model = timm.create_model(
        config["backbone"], pretrained=False, num_classes=int(labels.max()) + 1, in_chans=images.shape[3]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=0.05)
    built = time.time()
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1)
    y_all = torch.from_numpy(labels.astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    first = None
    for epoch in range(int(config["epochs"])):
        start = time.perf_counter()
        order = torch.randperm(len(y_all), generator=gen)
        model.train()
        for i in range(0, len(order) - config["batch_size"] + 1, config["batch_size"]):
            idx = order[i : i + config["batch_size"]]
            loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if first is None:
                first = time.time()
        report = {"epoch": epoch + 1, "epoch_seconds": time.perf_counter() - start}
        if epoch == 0:
            report.update(
                startup_s=first - entered,
                import_s=imported - entered,
                model_build_s=built - imported,
                first_batch_s=first - built,
            )
        tune.report(report)


def plain(num_cpus: int, trials: int, concurrent: int, trial_cpus: float, threads: int) -> dict:
    """Start-up of the plain trainable: same images, model and CPUs per trial as the quickstart's trials."""
    import ray
    from ray import tune

    from ferray.data import load_source

    data = load_source("synthetic:basic7?count=1400&size=48&seed=0&difficulty=0.2")
    train_rows = int(len(data) * 0.85 / 2)  # what one quickstart fold trains on (k=2, 15% holdout)
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(plain_trial, images=data.images[:train_rows], labels=data.labels[:train_rows]),
            {"CPU": trial_cpus},
        )
        with tempfile.TemporaryDirectory() as tmp:
            results = tune.Tuner(
                trainable,
                param_space={
                    "backbone": "resnet10t",
                    "lr": tune.loguniform(1e-3, 1e-2),
                    "epochs": 1,
                    "batch_size": 32,
                    "threads": threads,
                },
                tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrent),
                run_config=tune.RunConfig(storage_path=tmp, name="plain", verbose=0),
            ).fit()
            rows = [r.metrics for r in results if r.metrics and r.metrics.get("startup_s") is not None]
    finally:
        ray.shutdown()
    startups = [r["startup_s"] for r in rows]
    median = statistics.median(startups) if startups else float("nan")
    print(
        f"\n## plain Tune function trainable (torch + timm, resnet10t, {trials} trials, {concurrent} at once, "
        f"{trial_cpus:g} CPUs each; {_load()})"
    )
    for r in rows:
        print(
            f"  startup_s {r['startup_s']:.1f} = import {r['import_s']:.1f} + model {r['model_build_s']:.1f} "
            f"+ first batch {r['first_batch_s']:.1f}; epoch {r['epoch_seconds']:.1f} s"
        )
    print(f"start-up median: {median:.1f} s")
    return {"startup_median_s": median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", choices=["imports", "sweep", "plain"], default=[])
    parser.add_argument("--quick", action="store_true", help="1 import repeat; quickstart cut to 2 trials x 2 epochs")
    parser.add_argument("--repeats", type=int, default=None, help="import measurements per side (default 5)")
    parser.add_argument("--trials", type=int, default=None, help="quickstart trials (default: the spec's 6)")
    parser.add_argument("--epochs", type=int, default=None, help="quickstart max epochs (default: the spec's 6)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    what = args.what or ["imports", "sweep", "plain"]
    repeats = args.repeats or (1 if args.quick else 5)
    trials = args.trials or (2 if args.quick else None)
    epochs = args.epochs or (2 if args.quick else None)
    print(f"bench_startup: {sys.version.split()[0]}, {_load()}")
    figures: dict = {}
    if "imports" in what:
        figures["imports"] = imports(repeats)
    if "sweep" in what or "plain" in what:
        from ferray.search import load_search_spec
        from ferray.search._plan import plan_search_resources

        with tempfile.TemporaryDirectory() as tmp:
            spec = load_search_spec(_quickstart_spec(Path(tmp), trials, epochs))
        plan = plan_search_resources(spec, spec.folds.k, args.num_cpus)
        if "sweep" in what:
            with tempfile.TemporaryDirectory() as tmp:
                figures["sweep"] = sweep(args.num_cpus, trials, epochs, Path(tmp))
        if "plain" in what:
            figures["plain"] = plain(
                args.num_cpus, spec.budget.trials, plan.concurrent_trials, plan.trial_cpus, plan.threads_per_worker
            )
        if "sweep" in figures and "plain" in figures:
            ratio = figures["sweep"]["startup_median_s"] / figures["plain"]["startup_median_s"]
            figures["startup_ratio"] = ratio
            print(f"\nferray trial start-up / plain trainable start-up (target <= 2x): {ratio:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
