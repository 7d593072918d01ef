"""The fold trainer's two data paths: device-resident batch augmentation against the albumentations loader.

On the CPU (always): a FoldTrainer's training throughput (images/s) with ``run.data_path:
device`` (the fold's images in one tensor, whole batches augmented by BatchAugment) and
``loader`` (a DataLoader running the albumentations transform image by image), same model,
batch size, images and augmentation strength, epochs interleaved; and the data paths alone
(one epoch's batches produced and dropped, no model).

With CUDA: (a) a fold worker's training throughput with the device path, (b) a loop of
the same training step (model, loss, optimiser, AMP, channels_last, batch size) over random
tensors already on the GPU, with no data loading at all, (c) the albumentations loader with
``--workers`` DataLoader workers; and the ratios a/b (what the device path leaves of the
bare step's speed) and a/c. Images: 48 px grayscale FER2013 from ``$FERRAY_SHARED_DATA/fer2013``
(or ``../shared/datasets/fer2013``) when present, else ferray's synthetic faces. Prints
figures and asserts nothing.

    python benchmarks/bench_data_path.py
    python benchmarks/bench_data_path.py --threads 1 --steps 8
    python benchmarks/bench_data_path.py --backbone resnet10t --images 4096 --batch 64 --gpu-batch 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FERRAY_SHARED_DATA") or REPO.parent / "shared" / "datasets")


def load_images(n: int):
    """``n`` 48 px grayscale faces: a FER2013 sample when it is there, else synthetic ones; and their name."""
    from ferray.data import generate, load_source

    fer = SHARED / "fer2013"
    if fer.is_dir():
        data = load_source(fer)
        pick = np.sort(np.random.default_rng(0).choice(len(data), min(n, len(data)), replace=False))
        return data.subset(pick), f"FER2013 ({len(pick)} of {len(data)} images)"
    return generate(count=n, size=48, seed=0), f"synthetic faces ({n} images; FER2013 not at {fer})"


def config(backbone: str, batch: int, steps: int, path: str, device: str, workers: int, strength: float):
    from ferray.training.config import TrainConfig

    on_gpu = device == "cuda"
    return TrainConfig.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False},
            "augment": {"strength": strength, "tta": []},
            "optim": {"lr": 1e-3},
            "run": {
                "epochs": 1,
                "batch_size": batch,
                "amp": "auto" if on_gpu else "off",
                "channels_last": on_gpu,
                "loader_workers": workers,
                "max_steps_per_epoch": steps,
                "data_path": path,
            },
        }
    )


def trainer_for(data, cfg, device: str):
    from ferray.training._fold import FoldTrainer

    index = np.arange(len(data))
    trainer = FoldTrainer(cfg, data, index, index[:64], fold=0, device=device)
    if trainer.data_path != cfg.run.data_path:
        raise RuntimeError(f"asked for the {cfg.run.data_path} path, got {trainer.data_path}")
    return trainer


def training_ips(trainer, epoch: int) -> float:
    import torch

    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    stats = trainer.train_epoch(epoch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return stats.images / (time.perf_counter() - t)


def data_only_ips(trainer, epoch: int) -> float:
    """Images/s of producing one epoch's batches on the trainer's device, with no training step."""
    import torch

    t, seen = time.perf_counter(), 0
    for x, _, _ in trainer.train_batches(epoch):
        seen += len(x)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t)


def bare_ips(trainer, steps: int) -> float:
    """The trainer's own step (model, loss, optimiser, AMP) over random tensors on its device."""
    import torch

    dev, bs = trainer.device, trainer.cfg.run.batch_size
    gen = torch.Generator(dev).manual_seed(0)
    x = torch.rand((bs, trainer.channels, trainer.size, trainer.size), generator=gen, device=dev) * 2 - 1
    if trainer.cfg.run.channels_last and dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, trainer.data.num_classes, (bs,), generator=gen, device=dev)
    y = torch.nn.functional.one_hot(labels, trainer.data.num_classes).float()
    trainer.model.train()
    step = partial(trainer._loss, x, y, None)
    for _ in range(3):  # warm-up: autotuning
        trainer.train_step(step).item()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(step).item()  # .item(): the fold trainer reads every step's loss too
    torch.cuda.synchronize()
    return steps * bs / (time.perf_counter() - t)


def median_of(values: list[float]) -> str:
    return f"{statistics.median(values):9.0f} images/s   runs {[round(v) for v in values]}"


def cpu_part(data, args) -> None:
    import torch

    cfgs = {
        path: config(args.backbone, args.batch, args.steps, path, "cpu", 0, args.strength)
        for path in ("device", "loader")
    }
    trainers = {path: trainer_for(data, cfg, "cpu") for path, cfg in cfgs.items()}
    data_ips = {path: [] for path in trainers}
    train_ips = {path: [] for path in trainers}
    for trainer in trainers.values():  # warm-up
        training_ips(trainer, 0)
    for r in range(args.repeats):
        for path, trainer in trainers.items():
            data_ips[path].append(data_only_ips(trainer, r + 1))
            train_ips[path].append(training_ips(trainer, r + 1))
    print(
        f"CPU ({torch.get_num_threads()} torch threads), {args.backbone}, batch {args.batch}, "
        f"{args.steps} steps an epoch, strength {args.strength}, loader_workers 0, median of {args.repeats}:"
    )
    for path in trainers:
        print(f"  training, {path:6s} path  {median_of(train_ips[path])}")
    for path in trainers:
        print(f"  data only, {path:6s} path {median_of(data_ips[path])}")
    ratio = statistics.median(train_ips["device"]) / statistics.median(train_ips["loader"])
    print(f"  training device/loader: {ratio:.3f}")


def gpu_part(data, args) -> None:
    import torch

    make = partial(config, args.backbone, args.gpu_batch, args.gpu_steps, device="cuda", strength=args.strength)
    device_trainer = trainer_for(data, make(path="device", workers=0), "cuda")
    loader_trainer = trainer_for(data, make(path="loader", workers=args.workers), "cuda")
    bare_trainer = trainer_for(data, make(path="loader", workers=0), "cuda")
    training_ips(device_trainer, 0)
    training_ips(loader_trainer, 0)
    a, b, c = [], [], []
    for r in range(args.repeats):
        a.append(training_ips(device_trainer, r + 1))
        b.append(bare_ips(bare_trainer, args.gpu_steps))
        c.append(training_ips(loader_trainer, r + 1))
    print(
        f"{torch.cuda.get_device_name(0)}, {args.backbone}, batch {args.gpu_batch}, {args.gpu_steps} steps, "
        f"AMP {str(device_trainer.amp_dtype).replace('torch.', '')}, channels_last, strength {args.strength}, "
        f"median of {args.repeats}:"
    )
    print(f"  (a) fold worker, device path        {median_of(a)}")
    print(f"  (b) random tensors on the GPU       {median_of(b)}")
    print(f"  (c) fold worker, loader ({args.workers} workers) {median_of(c)}")
    ma, mb, mc = (statistics.median(v) for v in (a, b, c))
    print(f"  a/b {ma / mb:.3f}   a/c {ma / mc:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=64, help="CPU batch size")
    ap.add_argument("--steps", type=int, default=12, help="CPU steps an epoch")
    ap.add_argument("--gpu-batch", type=int, default=256)
    ap.add_argument("--gpu-steps", type=int, default=60)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers of the GPU loader run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the CPU part (default: torch's)")
    ap.add_argument("--no-cpu", action="store_true", help="only the GPU part")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    data, name = load_images(args.images)
    print(f"torch {torch.__version__}; {name}, 48 px grayscale")
    if not args.no_cpu:
        cpu_part(data, args)
    if torch.cuda.is_available():
        gpu_part(data, args)
    else:
        print("no CUDA device: GPU part skipped")


if __name__ == "__main__":
    main()
