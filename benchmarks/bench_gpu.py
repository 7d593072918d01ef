"""Mixed precision and channels_last on a GPU: one fold worker's training throughput, per setting.

For each backbone, a FoldTrainer (the fold worker's training loop: data, albumentations,
mixup, loss, optimiser, schedule, EMA) trains a fixed number of steps on synthetic faces
with AMP off (fp32), bf16 and fp16 (with the grad scaler), with and without channels_last,
and then predicts its validation rows. Printed: images/s of training, prediction, final
training loss (finite), peak GPU memory. It also checks that an fp16 run's state (with the
scaler) round-trips through the safe checkpoint loader. It asserts nothing; it needs CUDA.

    python benchmarks/bench_gpu.py --backbones resnet18 convnext_atto efficientnet_b0 --size 112
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_one(data, plan, backbone: str, amp: str, channels_last: bool, steps: int, batch: int, workers: int = 4) -> dict:
    import torch

    from ferray.training._fold import FoldTrainer
    from ferray.training.config import TrainConfig

    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False, "drop_path_rate": 0.05},
            "augment": {"strength": 0.5, "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 0.5, "tta": ["hflip"]},
            "optim": {
                "name": "adamw",
                "lr": 1e-3,
                "ema_decay": 0.999,
                "schedule": {"name": "cosine", "warmup_epochs": 0.2},
            },
            "run": {
                "epochs": 2,
                "batch_size": batch,
                "amp": amp,
                "channels_last": channels_last,
                "loader_workers": workers,
                "max_steps_per_epoch": steps,
            },
            "resources": {"gpus_per_worker": 1},
        }
    )
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    trainer = FoldTrainer(cfg, data, plan.train_index(0), plan.val_index(0), fold=0, device=device)
    trainer.train_epoch(0)  # warm-up: cudnn autotuning, loader workers
    torch.cuda.synchronize()
    t = time.perf_counter()
    stats = trainer.train_epoch(1)
    torch.cuda.synchronize()
    train_ips = stats.images / (time.perf_counter() - t)
    t = time.perf_counter()
    probs, _ = trainer.predict(plan.val_index(0), ["hflip"])
    torch.cuda.synchronize()
    predict_ips = len(probs) / (time.perf_counter() - t)
    out = {
        "backbone": backbone,
        "amp": amp,
        "amp_dtype": str(trainer.amp_dtype).replace("torch.", ""),
        "channels_last": channels_last,
        "train_images_per_s": train_ips,
        "predict_images_per_s": predict_ips,
        "train_loss": stats.train_loss,
        "finite": math.isfinite(stats.train_loss),
        "probs_sum_ok": bool(abs(float(probs.sum(axis=1).mean()) - 1.0) < 1e-3),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    if amp == "fp16":
        from ferray.training.checkpoint import load_fold_state, save_fold_state

        with tempfile.TemporaryDirectory() as d:
            save_fold_state({"trainer": trainer.state_dict(), "history": []}, Path(d) / "fold_0.pt")
            state = load_fold_state(Path(d) / "fold_0.pt", device)
            again = FoldTrainer(cfg, data, plan.train_index(0), plan.val_index(0), fold=0, device=device)
            again.load_state_dict(state["trainer"])
            out["checkpoint_roundtrip"] = again.scaler.get_scale() == trainer.scaler.get_scale()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "convnext_atto", "efficientnet_b0"])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--images", type=int, default=4200)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--amp", nargs="+", default=["off", "bf16", "fp16"], choices=["off", "bf16", "fp16"])
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers (run.loader_workers)")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark measures GPU training")
    from ferray.data import generate, plan_folds

    t = time.perf_counter()
    data = generate(count=args.images, size=args.size, channels=3, seed=0)
    plan = plan_folds(data, 2, seed=0, holdout="none")
    print(
        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; {len(data)} synthetic faces "
        f"{args.size}px RGB generated in {time.perf_counter() - t:.0f} s; {args.steps} steps x batch {args.batch}, "
        f"{args.workers} loader workers"
    )
    print(
        f"{'backbone':18}{'amp':>6}{'dtype':>10}{'ch_last':>8}{'train img/s':>13}{'predict img/s':>15}"
        f"{'loss':>8}{'peak GiB':>10}  checks"
    )
    for backbone in args.backbones:
        for amp in args.amp:
            for cl in (False, True):
                try:
                    r = run_one(data, plan, backbone, amp, cl, args.steps, args.batch, args.workers)
                except Exception as exc:  # noqa: BLE001 - print and go on to the next setting
                    print(f"{backbone:18}{amp:>6}{'':>10}{str(cl):>8}  FAILED: {type(exc).__name__}: {exc}")
                    continue
                checks = ("finite" if r["finite"] else "NOT FINITE") + ("" if r["probs_sum_ok"] else ", probs!")
                if "checkpoint_roundtrip" in r:
                    checks += ", ckpt ok" if r["checkpoint_roundtrip"] else ", CKPT MISMATCH"
                print(
                    f"{backbone:18}{amp:>6}{r['amp_dtype']:>10}{str(cl):>8}{r['train_images_per_s']:>13.0f}"
                    f"{r['predict_images_per_s']:>15.0f}{r['train_loss']:>8.3f}{r['peak_mem_gib']:>10.2f}  {checks}"
                )


if __name__ == "__main__":
    main()
