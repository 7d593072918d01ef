"""Ensemble, distillation and export on a CPU-sized FER2013 sweep: every figure from one run.

A sweep over a stratified FER2013 subset (train split for cross-validation, a stratified
sample of the test split as holdout), then what `ferray search` runs after the trials:
ensembles of the best trials, a distilled student and the exported bundle. Printed:

* holdout accuracy / macro-F1 of the best single trial, and of the mean, greedy and
  stacking ensembles (target: greedy >= +2.5 points over the best single trial);
* the student: accuracy lost against the chosen ensemble (target: within 1.0 point) and
  latency speed-up at batch 1 (target >= 10x);
* onnxruntime against PyTorch eager throughput of the ensemble graph (images/s).

    python benchmarks/bench_ensemble.py                       # ~15 min on 2 CPUs
    python benchmarks/bench_ensemble.py --train 3000 --test 1000 --trials 8 --epochs 6 --out ens.json

Needs ../shared/datasets/fer2013 (class folders); it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FER2013 = REPO.parent / "shared" / "datasets" / "fer2013"


def prepare(train: int, test: int, cache: Path, seed: int = 0) -> str:
    """Stratified samples of FER2013's train and test splits as one prepared Parquet file."""
    import numpy as np

    from ferray.data import load_source, write_parquet

    out = cache / f"fer2013-ens-{train}-{test}-{seed}.parquet"
    if out.is_file():
        return str(out)
    cache.mkdir(parents=True, exist_ok=True)
    full = load_source(str(FER2013), size=48, channels=1)
    rng = np.random.default_rng(seed)
    keep = []
    for split, n in (("train", train), ("test", test)):
        in_split = np.flatnonzero(full.splits == split)
        for c in range(full.num_classes):
            rows = in_split[full.labels[in_split] == c]
            share = max(1, round(n * len(rows) / len(in_split)))
            keep.extend(rng.choice(rows, size=min(share, len(rows)), replace=False).tolist())
    write_parquet(full.subset(np.sort(np.asarray(keep))), out)
    return str(out)


def spec(source: str, trials: int, epochs: int, student_epochs: int):
    from ferray.search import SearchSpec

    return SearchSpec.model_validate(
        {
            "name": "bench-ensemble",
            "data": {"source": source},
            "folds": {"k": 2, "seed": 0, "holdout": "test"},
            "model": {"backbone": "resnet10t", "pretrained": False},
            "augment": {"strength": 0.3, "tta": ["hflip"]},
            "run": {"batch_size": 64, "amp": "off", "channels_last": False, "metric": "accuracy"},
            "space": {
                "optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                "optim.weight_decay": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
                "model.backbone": {"type": "categorical", "choices": ["resnet10t", "mobilenetv3_small_050"]},
                "loss.name": {"type": "categorical", "choices": ["ce", "label_smoothing"]},
            },
            "budget": {
                "trials": trials,
                "max_epochs": epochs,
                "grace_period": 2,
                "reduction_factor": 2,
                "max_concurrent": 2,
            },
            "search": {"sampler": "tpe", "seed": 0, "n_startup_trials": max(2, trials // 3)},
            "ensemble": {"enabled": True, "top_k": 5, "methods": ["greedy", "stacking", "mean"], "export": True},
            "distill": {"enabled": True, "student": "mobilenetv3_small_050", "epochs": student_epochs},
        }
    )


def throughput(bundle: Path, run, batch: int = 64, repeats: int = 5) -> dict:
    """Images/s of the ensemble graph in onnxruntime and the same members in PyTorch eager."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from ferray.training import load_fold_models

    manifest = json.loads((bundle / "manifest.json").read_text())
    size, channels = manifest["input"]["size"], manifest["input"]["channels"]
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(bundle / "ensemble.onnx"), opts, providers=["CPUExecutionProvider"])
    session.run(["probs"], {"images": images})
    t = time.perf_counter()
    for _ in range(repeats):
        session.run(["probs"], {"images": images})
    ort_ips = batch * repeats / (time.perf_counter() - t)
    members = [load_fold_models(run.trial(m["name"])) for m in manifest["ensemble"]["members"]]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def eager():
        with torch.no_grad():
            return [torch.stack([torch.softmax(f(x)["logits"], 1) for f in folds]).mean(0) for folds in members]

    eager()
    t = time.perf_counter()
    for _ in range(repeats):
        eager()
    eager_ips = batch * repeats / (time.perf_counter() - t)
    return {
        "onnxruntime_images_per_s": ort_ips,
        "eager_images_per_s": eager_ips,
        "ratio": ort_ips / eager_ips,
        "members": len(members),
        "fold_models": sum(len(m) for m in members),
        "batch": batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=3000, help="FER2013 train images (cross-validation)")
    ap.add_argument("--test", type=int, default=1000, help="FER2013 test images (holdout)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--student-epochs", type=int, default=6)
    ap.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args()
    if not FER2013.is_dir():
        sys.exit(f"{FER2013} not found: this benchmark needs the real FER2013 class folders")

    import ray

    from ferray.ensemble import build_ensembles  # noqa: F401 - fail early when a stage is missing
    from ferray.pipeline import finish_run
    from ferray.run.layout import RunLayout
    from ferray.search import run_search

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ensemble-"))
    source = prepare(args.train, args.test, work / "cache")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        result = run_search(
            spec(source, args.trials, args.epochs, args.student_epochs),
            run_dir=work / "run",
            live=False,
            echo=lambda s: None,
        )
        t_sweep = time.perf_counter() - t0
        done = finish_run(result.run_dir, echo=lambda s: None)
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t0
    run = RunLayout(result.run_dir)
    table = {r["name"]: r for r in done.ensemble.table}
    best_single = min((r for r in done.ensemble.table if r["kind"] == "member"), key=lambda r: r["rank"])
    figures = {
        "data": {"train_images": args.train, "test_images": args.test, "source": source},
        "trials": args.trials,
        "max_epochs": args.epochs,
        "sweep_seconds": t_sweep,
        "wall_seconds": wall,
        "holdout": {"best_single": {k: best_single[f"holdout_{k}"] for k in ("accuracy", "macro_f1")}},
    }
    for method in ("mean", "greedy", "stacking"):
        if method in table:
            figures["holdout"][method] = {k: table[method][f"holdout_{k}"] for k in ("accuracy", "macro_f1")}
    figures["chosen"] = done.ensemble.chosen
    d = done.distill.summary
    figures["student"] = {
        "accuracy": d["student"]["accuracy"],
        "ensemble_accuracy": d["ensemble"]["accuracy"],
        "points_lost": 100 * (d["ensemble"]["accuracy"] - d["student"]["accuracy"]),
        "latency_ms_batch1": d["student"]["latency_ms_per_image"]["batch_1"],
        "ensemble_latency_ms_batch1": d["ensemble"]["latency_ms_per_image"]["batch_1"],
        "speedup_batch1": d["ensemble"]["latency_ms_per_image"]["batch_1"]
        / d["student"]["latency_ms_per_image"]["batch_1"],
        "params": d["student"]["params"],
        "ensemble_params": d["ensemble"]["params"],
    }
    figures["throughput"] = throughput(done.bundle, run)

    h = figures["holdout"]
    print(
        f"sweep: {args.trials} trials x <= {args.epochs} epochs on {args.train} FER2013 train images, "
        f"holdout {args.test} test images; {t_sweep:.0f} s sweep, {wall:.0f} s with ensemble/distill/export"
    )
    print(f"{'':24}{'holdout acc':>12}{'macro-F1':>10}{'vs best single':>16}")
    for name, row in h.items():
        gain = 100 * (row["accuracy"] - h["best_single"]["accuracy"])
        print(f"{name:24}{row['accuracy']:>12.4f}{row['macro_f1']:>10.4f}{gain:>+15.2f}p")
    print(f"chosen ensemble: {figures['chosen']}")
    s = figures["student"]
    print(
        f"student mobilenetv3_small_050: accuracy {s['accuracy']:.4f} vs ensemble {s['ensemble_accuracy']:.4f} "
        f"({s['points_lost']:+.2f} points lost); batch-1 latency {s['latency_ms_batch1']:.2f} ms vs "
        f"{s['ensemble_latency_ms_batch1']:.2f} ms ({s['speedup_batch1']:.1f}x)"
    )
    tp = figures["throughput"]
    print(
        f"ensemble graph ({tp['members']} members, {tp['fold_models']} fold models, batch {tp['batch']}): "
        f"onnxruntime {tp['onnxruntime_images_per_s']:.0f} images/s, PyTorch eager "
        f"{tp['eager_images_per_s']:.0f} images/s ({tp['ratio']:.2f}x)"
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=float))


if __name__ == "__main__":
    main()
