"""Training benchmarks: fold-worker throughput, `ferray train` overhead, learning.

    python benchmarks/bench_train.py                 # all three
    python benchmarks/bench_train.py throughput      # one of: throughput overhead learning

Prints figures; asserts nothing. Throughput compares ferray's fold worker (FoldTrainer:
data + augmentation + step) with a bare PyTorch loop over the same model, batch, image size
and albumentations pipeline, interleaved in one process. Overhead runs ``ferray.train`` for
one epoch of a tiny model and splits the wall time. Learning trains k=3 folds on synthetic
basic-7 faces and on a FER2013 subset from ../shared/datasets (skipped when absent).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERRAY_SHARED_DATA") or REPO.parent / "shared" / "datasets")


def throughput(n: int = 2048, batch: int = 64, size: int = 48, backbone: str = "resnet10t", repeats: int = 3) -> None:
    import timm
    import torch
    from torch.utils.data import DataLoader, Dataset

    from ferray.data import generate
    from ferray.training._fold import FoldTrainer
    from ferray.training.augment import build_train_transform
    from ferray.training.config import TrainConfig

    torch.set_num_threads(os.cpu_count() or 1)
    data = generate(count=n, size=size, seed=0)
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": backbone},
            "augment": {"strength": 0.5},
            "run": {"epochs": 1, "batch_size": batch},
            "optim": {"lr": 1e-3},
        }
    )
    index = np.arange(n)

    class Bare(Dataset):
        def __init__(self, transform):
            self.t = transform

        def __len__(self):
            return n

        def __getitem__(self, i):
            return torch.from_numpy(self.t(data.images[i])), int(data.labels[i])

    model = timm.create_model(backbone, pretrained=False, num_classes=data.num_classes, in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

    def bare_epoch() -> float:
        loader = DataLoader(
            Bare(build_train_transform(size, 1, 0.5, seed=0)), batch_size=batch, shuffle=True, drop_last=True
        )
        model.train()
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(x)
        return seen / (time.perf_counter() - start)

    trainer = FoldTrainer(cfg, data, index, index[:64], fold=0, device="cpu")

    def ferray_epoch(epoch: int) -> float:
        stats = trainer.train_epoch(epoch)
        return stats.images / stats.seconds

    bare_epoch(), ferray_epoch(0)  # warm-up
    bare, fer = [], []
    for r in range(repeats):
        bare.append(bare_epoch())
        fer.append(ferray_epoch(r + 1))
    b, f = float(np.median(bare)), float(np.median(fer))
    print(
        f"throughput ({backbone}, {n} images {size}px, batch {batch}, augment strength 0.5, "
        f"{torch.get_num_threads()} threads, median of {repeats}):"
    )
    print(f"  bare PyTorch loop : {b:8.1f} images/s   runs {[round(v, 1) for v in bare]}")
    print(f"  ferray FoldTrainer: {f:8.1f} images/s   runs {[round(v, 1) for v in fer]}")
    print(f"  ratio ferray/bare : {f / b:.3f}  (target >= 0.9)")


def overhead() -> None:
    from ferray.training import train

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = train(
            {
                "data": {"source": "synthetic:basic7?count=350&size=48&seed=0"},
                "folds": {"k": 3},
                "model": {"backbone": "test_resnet"},
                "run": {"epochs": 1, "batch_size": 32},
            },
            output_dir=tmp,
            num_cpus=2,
            progress=False,
        )
        wall = time.perf_counter() - t
    tm = result.timings
    print("overhead of `ferray train` (k=3, test_resnet, 350 images, 1 epoch, local Ray 2 CPUs):")
    for key in ("load_data", "ray_start", "data_put", "worker_start", "data_get", "compute", "fit", "total"):
        print(f"  {key:13s} {tm.get(key, float('nan')):7.2f} s")
    other = tm["fit"] - tm["worker_start"] - tm["compute"]
    print(f"  fit - worker_start - compute (checkpoint, report, predict, teardown): {other:.2f} s")
    print(f"  wall {wall:.2f} s")


def learning(epochs: int = 6) -> None:
    from ferray.data import FERData, load_source
    from ferray.training import train

    base = {
        "folds": {"k": 3, "holdout": "none"},
        "model": {"backbone": "resnet10t"},
        "augment": {"strength": 0.1, "tta": []},
        "optim": {"lr": 3e-3},
        "run": {"epochs": epochs, "batch_size": 64},
    }
    runs: list[tuple[str, FERData | None, dict]] = [
        (
            "synthetic basic7 (1,400 x 48px, difficulty 0.3)",
            None,
            {"data": {"source": "synthetic:basic7?count=1400&size=48&seed=0&difficulty=0.3"}},
        ),
    ]
    fer = SHARED / "fer2013"
    if fer.is_dir():
        data = load_source(fer)
        rng = np.random.default_rng(0)
        train_rows = np.flatnonzero(data.splits == "train")
        pick = np.sort(rng.choice(train_rows, 3000, replace=False))
        runs.append(("FER2013 subset (3,000 train images, 48px gray)", data.subset(pick), {}))
    else:
        print(f"FER2013 not found at {fer}: skipping its learning run")
    for name, data, extra in runs:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = train({**base, **extra}, data=data, output_dir=tmp, num_cpus=2, progress=False)
            wall = time.perf_counter() - t
        chance = 1.0 / len(result.final and (data.class_names if data is not None else range(7)))
        majority = None
        if data is not None:
            majority = np.bincount(data.labels).max() / len(data)
        print(f"learning: {name}, k=3, resnet10t, {epochs} epochs, {wall:.0f} s wall")
        for r in result.history:
            print(
                f"  epoch {r['epoch']}: fold-mean accuracy {r['val_accuracy_mean']:.3f} ± "
                f"{r['val_accuracy_std']:.3f}, macro-F1 {r['val_macro_f1_mean']:.3f}"
            )
        print(f"  chance (uniform) {chance:.3f}" + (f", majority class {majority:.3f}" if majority else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "which",
        nargs="*",
        default=["throughput", "overhead", "learning"],
        choices=["throughput", "overhead", "learning"],
    )
    args = parser.parse_args()
    for name in args.which:
        globals()[name]()


if __name__ == "__main__":
    main()
