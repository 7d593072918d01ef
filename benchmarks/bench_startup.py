"""Trial start-up: fold-worker imports, each trial's start-up breakdown, the quickstart's wall time.

    python benchmarks/bench_startup.py                 # everything, the packaged quickstart as shipped
    python benchmarks/bench_startup.py --quick         # 1 import repeat; quickstart cut to 2 trials x 2 epochs
    python benchmarks/bench_startup.py imports         # one of: imports sweep plain tiny (sweep = the quickstart)
    python benchmarks/bench_startup.py tiny            # 12 tiny trials: ferray's sweep wall vs a plain Tune sweep
    python benchmarks/bench_startup.py tiny --no-plain # ferray's side only

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
  (function entry -> first training step) next to ferray's (target: ferray <= 2x);
* tiny: where start-up is nearly everything. 12 trials of timm's ``test_resnet``, k=2, 3 epochs of
  well under a second, Optuna TPE + ASHA (grace 1), 2 at once: ``ferray search`` (command to
  summary) against a plain Ray Tune function trainable that does the same work in its own
  process (both folds' models, every epoch, the same images and folds, OptunaSearch + ASHA, the
  same CPUs per trial), each timed from its command to its end in a fresh process (target <= 2x).
  Also ferray's per-trial timeline from results.parquet: trial start-up and its phases, the
  trial actor's start before the trial function, and the time from the last epoch's report to
  the trial's end.

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
#: Per-trial moments before and after the fold workers' own start-up (results.parquet columns).
TIMELINE = ("trial_boot_s",)
PHASES = (
    "trial_setup_s",
    "worker_spawn_s",
    "worker_process_s",
    "import_s",
    "data_get_s",
    "model_build_s",
    "first_batch_s",
)


def _search(spec_path: Path, work: Path, name: str, num_cpus: int) -> tuple[float, list[dict]]:
    """Run ``ferray search`` (no live view, no finish) as a subprocess: its wall seconds and result rows."""
    from ferray.run.results import read_results

    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ferray.cli", "search", str(spec_path), "--storage", str(work), "--name", name]
        + ["--no-live", "--no-finish", "--num-cpus", str(num_cpus)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"ferray search exited with {proc.returncode}")
    return wall, read_results(work / name / "results.parquet")


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
    from ferray.search import load_search_spec
    from ferray.search._plan import plan_search_resources

    spec_path = _quickstart_spec(work, trials, epochs)
    spec = load_search_spec(spec_path)
    plan = plan_search_resources(spec, spec.folds.k, num_cpus)
    load_before = _load()
    wall, rows = _search(spec_path, work, "quickstart", num_cpus)
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


#: The tiny sweep: what both sides of ``tiny`` train.
TINY = {
    "source": "synthetic:basic7?count=500&size=48&seed=0&difficulty=0.2",
    "backbone": "test_resnet",
    "k": 2,
    "trials": 12,
    "epochs": 3,
    "concurrent": 2,
    "batch_size": 32,
}


def _tiny_spec(work: Path) -> Path:
    import yaml

    from ferray.search import packaged_spec

    raw = yaml.safe_load(packaged_spec("quickstart").read_text())
    raw["name"] = "tiny"
    raw["data"]["source"] = TINY["source"]
    raw["folds"]["k"] = TINY["k"]
    raw["model"]["backbone"] = TINY["backbone"]
    raw["augment"]["tta"] = []
    raw["run"]["batch_size"] = TINY["batch_size"]
    raw["space"].pop("model.backbone")
    raw["budget"].update(
        trials=TINY["trials"], max_epochs=TINY["epochs"], grace_period=1, max_concurrent=TINY["concurrent"]
    )
    raw["ensemble"]["enabled"] = False
    spec = work / "tiny.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    return spec


def _tiny_ferray(num_cpus: int, work: Path) -> dict:
    spec_path = _tiny_spec(work)
    wall, rows = _search(spec_path, work, "tiny", num_cpus)
    first = [r for r in rows if r.get("startup_s") is not None]
    phases = {}
    for key in ("startup_s", *TIMELINE, *PHASES):
        values = [r[key] for r in first if r.get(key) is not None]
        if values:
            phases[key] = statistics.median(values)
    return {"wall_s": wall, "trials": len({r["trial_id"] for r in rows}), "medians": phases}


def tiny_trial(config: dict, images=None, labels=None, folds=None) -> None:
    """The plain side of ``tiny``: every fold's model trained in this process, one report per epoch."""
    import numpy as np
    import timm
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(config["threads"])))
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1)
    y_all = torch.from_numpy(labels.astype(np.int64))
    folds = np.asarray(folds)
    classes = int(labels.max()) + 1
    runs = []
    for fold in range(int(folds.max()) + 1):
        model = timm.create_model(config["backbone"], pretrained=False, num_classes=classes, in_chans=images.shape[3])
        opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=0.05)
        train = torch.from_numpy(np.flatnonzero((folds != fold) & (folds >= 0)))
        val = torch.from_numpy(np.flatnonzero(folds == fold))
        runs.append((model, opt, train, val))
    gen = torch.Generator().manual_seed(0)
    for epoch in range(int(config["epochs"])):
        accuracies = []
        for model, opt, train, val in runs:
            model.train()
            order = train[torch.randperm(len(train), generator=gen)]
            for i in range(0, len(order) - config["batch_size"] + 1, config["batch_size"]):
                idx = order[i : i + config["batch_size"]]
                loss = torch.nn.functional.cross_entropy(
                    model(x_all[idx]), y_all[idx], label_smoothing=config["smoothing"]
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                accuracies.append(float((model(x_all[val]).argmax(1) == y_all[val]).float().mean()))
        tune.report({"epoch": epoch + 1, "metric": float(np.mean(accuracies))})


def _tiny_plain_child(num_cpus: int, trial_cpus: float, threads: int) -> None:
    """Runs in its own process (``tiny --plain-child``): the plain Tune sweep of ``tiny``."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from ferray.data import load_source, plan_folds

    data = load_source(TINY["source"])
    plan = plan_folds(data, TINY["k"], seed=0, holdout=0.15)
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(tiny_trial, images=data.images, labels=data.labels, folds=plan.fold),
            {"CPU": trial_cpus},
        )
        with tempfile.TemporaryDirectory() as tmp:
            results = tune.Tuner(
                trainable,
                param_space={
                    "backbone": TINY["backbone"],
                    "lr": tune.loguniform(1e-3, 1e-2),
                    "smoothing": tune.choice([0.0, 0.1]),
                    "epochs": TINY["epochs"],
                    "batch_size": TINY["batch_size"],
                    "threads": threads,
                },
                tune_config=tune.TuneConfig(
                    metric="metric",
                    mode="max",
                    search_alg=OptunaSearch(seed=0),
                    scheduler=ASHAScheduler(
                        time_attr="epoch", max_t=TINY["epochs"], grace_period=1, reduction_factor=2
                    ),
                    num_samples=TINY["trials"],
                    max_concurrent_trials=TINY["concurrent"],
                ),
                run_config=tune.RunConfig(storage_path=tmp, name="plain", verbose=0),
            ).fit()
            print(json.dumps({"trials": len(results), "errors": sum(r.error is not None for r in results)}))
    finally:
        ray.shutdown()


def tiny(num_cpus: int, plain: bool = True) -> dict:
    """``tiny``: ferray's sweep wall against the plain trainable's, both from a fresh process
    (``plain=False``: ferray's side only, e.g. to compare two ferray versions under one lock)."""
    from ferray.search import load_search_spec
    from ferray.search._plan import plan_search_resources

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_search_spec(_tiny_spec(Path(tmp)))
        plan = plan_search_resources(spec, spec.folds.k, num_cpus)
        load_before = _load()
        ferray = _tiny_ferray(num_cpus, Path(tmp))
    print(
        f"\n## tiny: {TINY['trials']} trials of {TINY['backbone']}, k={TINY['k']}, {TINY['epochs']} epochs, "
        f"ASHA + TPE, {plan.concurrent_trials} at once, {plan.trial_cpus:g} CPUs per trial, {num_cpus} CPUs "
        f"(before: {load_before}; after ferray: {_load()})"
    )
    print("ferray per-trial medians: " + ", ".join(f"{k} {v:.1f}" for k, v in ferray["medians"].items()))
    print(f"ferray search, command to summary: {ferray['wall_s']:.0f} s ({ferray['trials']} trials)")
    if not plain:
        return {"ferray": ferray}
    t = time.perf_counter()
    child = [sys.executable, __file__, "tiny", "--plain-child", "--num-cpus", str(num_cpus)]
    child += ["--trial-cpus", str(plan.trial_cpus), "--threads", str(max(1, round(plan.trial_cpus)))]
    proc = subprocess.run(child, capture_output=True, text=True, cwd=REPO)
    plain_wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the plain Tune sweep exited with {proc.returncode}")
    ratio = ferray["wall_s"] / plain_wall
    counts = json.loads(proc.stdout.strip().splitlines()[-1])  # Tune prints its own table before it
    print(f"plain Tune function trainable, command to end: {plain_wall:.0f} s ({counts['trials']} trials)")
    print(f"ratio (target <= 2x): {ratio:.2f}x ({_load()})")
    return {"ferray": ferray, "plain_wall_s": plain_wall, "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", choices=["imports", "sweep", "plain", "tiny"], default=[])
    parser.add_argument("--quick", action="store_true", help="1 import repeat; quickstart cut to 2 trials x 2 epochs")
    parser.add_argument("--repeats", type=int, default=None, help="import measurements per side (default 5)")
    parser.add_argument("--trials", type=int, default=None, help="quickstart trials (default: the spec's 6)")
    parser.add_argument("--epochs", type=int, default=None, help="quickstart max epochs (default: the spec's 6)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--no-plain", action="store_true", help="tiny: ferray's side only (no plain Tune sweep)")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trial-cpus", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        _tiny_plain_child(args.num_cpus, args.trial_cpus, args.threads)
        return
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
    if "tiny" in what:
        figures["tiny"] = tiny(args.num_cpus, plain=not args.no_plain)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
