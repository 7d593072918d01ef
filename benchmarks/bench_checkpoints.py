"""Checkpoint writing and run-directory size, before and after the retention policy.

Two parts, both without Ray (a sweep's figures come from the same operations Ray Train runs):

1. **Per epoch, per fold**: bytes written and seconds spent writing one fold's epoch
   checkpoint (model, AdamW moments, scheduler, RNG: the state the fold worker saves), for
   each quickstart backbone:

   * *before*: ``save_fold_state`` with fsync to a scratch folder, then Ray's synchronous
     copy (``pyarrow.fs.copy_files``) into the trial's ``checkpoints/epoch_NNNN`` - both on
     the training's critical path; two epochs kept (``num_to_keep=2``);
   * *after, local storage*: the state written once, straight into the run's checkpoint
     folder (no fsync, no copy; ``CheckpointUploadMode.NO_UPLOAD``); one epoch kept;
   * *after, remote storage* (``--storage s3://...`` or a mounted path): scratch write on the
     critical path, the upload on another thread while the next epoch trains (``ASYNC``).

2. **Quickstart-sized run directory**: the trial folders the packaged quickstart leaves
   (k=2; 3 completed resnet10t trials and 3 pruned mobilenetv3_small_050 trials, the mix
   behind the 761 MB the quickstart used to leave) written with real state, weights and prediction sizes, measured
   as the sweep left them before (two checkpoints per trial, no policy) and after the policy
   (``apply_retention``), with fp32 and float16 weights. ``--sweep`` also runs the real
   quickstart (``ferray search --no-finish``; minutes on a quiet machine, many more on a
   loaded one) and measures its run directory.

    python benchmarks/bench_checkpoints.py                    # ~1 min on 2 CPUs
    python benchmarks/bench_checkpoints.py --repeats 5 --storage /mnt/nfs/scratch --out ckpt.json
    python benchmarks/bench_checkpoints.py --sweep            # + a real quickstart sweep

Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BACKBONES = ("resnet10t", "mobilenetv3_small_050")
QUICKSTART_MIX = (("COMPLETED", "resnet10t"),) * 3 + (("PRUNED", "mobilenetv3_small_050"),) * 3


def fold_state(backbone: str, size: int = 48) -> dict:
    """A fold worker's epoch state after real training steps (AdamW moments filled)."""
    from ferray.data import load_source
    from ferray.training._fold import FoldTrainer
    from ferray.training.config import TrainConfig

    data = load_source(f"synthetic:basic7?count=96&size={size}&seed=0")
    cfg = TrainConfig.model_validate(
        {
            "model": {"backbone": backbone, "pretrained": False},
            "optim": {"name": "adamw"},
            "run": {"epochs": 6, "batch_size": 16, "max_steps_per_epoch": 2, "amp": "off", "channels_last": False},
        }
    )
    idx = __import__("numpy").arange(len(data))
    trainer = FoldTrainer(cfg, data, idx[: len(idx) // 2], idx[len(idx) // 2 :], fold=0, device="cpu")
    trainer.train_epoch(0)
    history = [{"epoch": 1, "metric": 0.3, "final": False}]
    return {"trainer": trainer.state_dict(), "history": history, "best": 0.3, "best_epoch": 1, "since_best": 0}, trainer


def _copy(src: str, dst: str) -> None:
    """Ray Train's persist step: ``pyarrow.fs.copy_files`` of the checkpoint folder."""
    import pyarrow.fs as pafs

    from ferray._io import resolve_fs

    fs, path = resolve_fs(dst)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(src, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _settle() -> None:
    """Flush earlier writes (untimed): each timed write starts with no write-back of another's
    bytes competing with it, as an epoch apart from the last one's checkpoint does."""
    if hasattr(os, "sync"):
        os.sync()


def bench_epoch_writes(state: dict, work: Path, repeats: int, storage: str | None) -> dict:
    from ferray.training.checkpoint import save_fold_state

    out: dict[str, dict] = {}
    # before: fsync'd scratch write + synchronous copy into the trial's folder
    times, written = [], []
    for r in range(repeats):
        _settle()
        scratch = Path(tempfile.mkdtemp(prefix="bench-scratch-", dir=work))
        dest = work / "before" / f"epoch_{r:04d}"
        t = time.perf_counter()
        save_fold_state(state, scratch / "fold_0.pt")
        _copy(str(scratch), str(dest))
        times.append(time.perf_counter() - t)
        size = (dest / "fold_0.pt").stat().st_size
        written.append(2 * size)
        shutil.rmtree(scratch)
    out["before"] = {
        "critical_s": statistics.median(times),
        "bytes_written": written[0],
        "file_bytes": size,
        "kept_epochs": 2,
    }
    # after, local storage: one write into the checkpoint folder
    times = []
    for r in range(repeats):
        _settle()
        dest = work / "after" / f"epoch_{r:04d}"
        t = time.perf_counter()
        save_fold_state(state, dest / "fold_0.pt", durable=False)
        times.append(time.perf_counter() - t)
    out["after_local"] = {
        "critical_s": statistics.median(times),
        "bytes_written": size,
        "file_bytes": size,
        "kept_epochs": 1,
    }
    # after, remote storage: scratch write on the critical path, the upload on a thread
    target = storage or str(work / "remote")
    times, background = [], []
    for r in range(repeats):
        _settle()
        scratch = Path(tempfile.mkdtemp(prefix="bench-scratch-", dir=work))
        t = time.perf_counter()
        save_fold_state(state, scratch / "fold_0.pt", durable=False)
        critical = time.perf_counter() - t

        dst_of = f"{target.rstrip('/')}/bench-{os.getpid()}/epoch_{r:04d}"

        def upload(src=str(scratch), dst=dst_of):
            t0 = time.perf_counter()
            _copy(src, dst)
            shutil.rmtree(src)
            background.append(time.perf_counter() - t0)

        th = threading.Thread(target=upload)
        th.start()
        th.join()
        times.append(critical)
    out["after_remote"] = {
        "critical_s": statistics.median(times),
        "background_s": statistics.median(background),
        "bytes_written": 2 * size,
        "file_bytes": size,
        "kept_epochs": 1,
        "storage": target,
    }
    if storage and "://" not in storage:
        shutil.rmtree(Path(storage) / f"bench-{os.getpid()}", ignore_errors=True)
    return out


# -- a quickstart-sized run folder --------------------------------------------------------------


def _weights(trainer, path: Path, backbone: str) -> None:
    from ferray.training.weights import save_weights

    meta = {
        "train": trainer.cfg.model_dump(mode="json"),
        "num_classes": 7,
        "in_chans": trainer.channels,
        "img_size": trainer.size,
        "class_names": [f"c{i}" for i in range(7)],
        "fold": 0,
        "k": 2,
        "ema": False,
        "normalise": {"mean": 0.5, "std": 0.5},
        "data_fingerprint": "bench",
    }
    save_weights(trainer.eval_model, path, meta)


def build_quickstart_run(root: Path, states: dict, k: int = 2, rows: int = 1400, holdout: float = 0.15) -> Path:
    """The trial folders of a finished quickstart sweep as the code before this change left them."""
    import numpy as np

    from ferray.run.layout import RunLayout
    from ferray.run.predictions import Predictions, write_predictions
    from ferray.run.results import ResultsTable
    from ferray.search import packaged_spec
    from ferray.training.checkpoint import save_fold_state

    run = RunLayout(root)
    root.mkdir(parents=True)
    shutil.copy(packaged_spec("quickstart"), run.spec)
    table = ResultsTable()
    rng = np.random.default_rng(0)
    n_hold = int(rows * holdout)
    cv = np.arange(rows - n_hold)
    ids = np.array([f"img_{i}" for i in range(rows)], dtype=object)
    labels = rng.integers(0, 7, rows)
    for i, (state, backbone) in enumerate(QUICKSTART_MIX):
        tid = f"qs_{i:05d}"
        trial = run.trial(tid)
        trial.root.mkdir()
        (trial.config).write_text(f"model: {{backbone: {backbone}}}\n")
        epochs = 6 if state == "COMPLETED" else 2
        params = {"model.backbone": backbone, "optim.lr": 0.002 * (i + 1)}
        table.add_trial(tid, params, number=i)
        for e in range(1, epochs + 1):
            table.add_result(tid, params, {"epoch": e, "metric": 0.3 + 0.05 * e - 0.01 * i, "final": e == 6})
        table.set_state(tid, state)
        fold_state_dict, trainer = states[backbone]
        names = [f"epoch_{e:04d}" for e in (epochs - 1, epochs)]
        for name in names:
            for fold in range(k):
                save_fold_state(fold_state_dict, trial.fold_checkpoint(trial.checkpoints / name, fold), durable=False)
        snapshot = {
            "ray_version": "bench",
            "checkpoint_results": [
                {"version": 0, "checkpoint_dir_name": n, "metrics": {"epoch": int(n[-4:])}} for n in names
            ],
            "checkpoint_report_indices": [0, 1],
            "pending_training_results": [],
            "pending_validation_specs": [],
            "current_report_index": 2,
            "validated_checkpoint_dir_names": [],
            "timed_out_validation_checkpoint_dir_names": [],
            "failed_validation_checkpoint_dir_names": [],
        }
        snapshot["latest_checkpoint_result"] = snapshot["checkpoint_results"][-1]
        (trial.checkpoints / "checkpoint_manager_snapshot.json").write_text(json.dumps(snapshot))
        if state == "COMPLETED":
            for fold in range(k):
                _weights(trainer, trial.weights(fold), backbone)
            meta = {"class_names": [f"c{i}" for i in range(7)], "k": k, "data_fingerprint": "bench", "tta": ["hflip"]}
            probs = rng.dirichlet(np.ones(7), len(cv)).astype(np.float32)
            write_predictions(
                Predictions(cv, ids[cv], cv % k, labels[cv], probs, None, {**meta, "kind": "oof"}), trial.oof
            )
            hrows = np.tile(np.arange(rows - n_hold, rows), k)
            hp = rng.dirichlet(np.ones(7), len(hrows)).astype(np.float32)
            write_predictions(
                Predictions(
                    hrows,
                    ids[hrows],
                    np.repeat(np.arange(k), n_hold),
                    labels[hrows],
                    hp,
                    None,
                    {**meta, "kind": "holdout"},
                ),
                trial.holdout,
            )
            trial.metrics.write_text("{}")
    table.write(run.results)
    return root


def bench_run_size(states: dict, work: Path) -> dict:
    import yaml

    from ferray.run.disk import directory_size
    from ferray.run.layout import RunLayout
    from ferray.run.retention import apply_retention

    root = build_quickstart_run(work / "quickstart", states)
    run = RunLayout(root)
    raw = yaml.safe_load(run.spec.read_text())
    raw.setdefault("retention", {})["half_precision_weights"] = False
    run.spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    before = directory_size(root)
    # What the same sweep holds with num_to_keep=1 (the running-trial rule alone).
    one_epoch = before - sum(
        directory_size(t.checkpoints / p.name) for t in run.trials() for p in t.checkpoint_epochs()[:-1]
    )
    report = apply_retention(root)
    after = directory_size(root)
    raw["retention"]["half_precision_weights"] = True  # the packaged quickstart's setting
    run.spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    apply_retention(root)
    after_half = directory_size(root)
    return {
        "before": before,
        "num_to_keep_1": one_epoch,
        "after": after,
        "after_half": after_half,
        "removed_files": report.files,
        "weights_bytes": sum(directory_size(t.weights_dir) for t in run.trials()),
    }


def bench_sweep(work: Path, timeout: int) -> dict:
    """A real quickstart sweep (``ferray search --no-finish``), then the pipeline's policy pass."""
    from ferray.run.disk import directory_size
    from ferray.run.retention import apply_retention
    from ferray.run.status import get_status

    t = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferray.cli",
            "search",
            "--storage",
            str(work / "runs"),
            "--name",
            "qs",
            "--no-live",
            "--no-finish",
            "--num-cpus",
            str(os.cpu_count() or 2),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=work,
    )
    run = work / "runs" / "qs"
    out = {"returncode": proc.returncode, "seconds": time.perf_counter() - t}
    if not run.is_dir():
        out["error"] = proc.stderr[-2000:]
        return out
    out["after_sweep"] = directory_size(run)
    out["counts"] = get_status(run)["counts"]
    out["after_policy_pass"] = apply_retention(run).size_after
    out["disk"] = get_status(run, disk=True)["disk"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed writes per variant (median reported)")
    ap.add_argument("--storage", default=None, help="remote/mounted storage for the upload variant (default: local)")
    ap.add_argument("--sweep", action="store_true", help="also run the real quickstart and measure its run folder")
    ap.add_argument("--sweep-timeout", type=int, default=3600)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    results: dict = {"cpus": os.cpu_count(), "load": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        work = Path(tmp)
        states = {b: fold_state(b) for b in BACKBONES}
        print(f"machine: {os.cpu_count()} CPUs, load average {results['load'][0]:.1f} (figures under this load)")
        print(f"\nper epoch, per fold (median of {args.repeats}):")
        print(
            f"{'backbone':<24}{'variant':<14}{'file MB':>9}{'written MB':>12}{'critical s':>12}"
            f"{'background s':>14}{'kept':>6}"
        )
        results["epoch"] = {}
        for backbone in BACKBONES:
            w = work / backbone
            w.mkdir()
            r = bench_epoch_writes(states[backbone][0], w, args.repeats, args.storage)
            results["epoch"][backbone] = r
            for variant, v in r.items():
                print(
                    f"{backbone:<24}{variant:<14}{v['file_bytes'] / 1e6:>9.1f}{v['bytes_written'] / 1e6:>12.1f}"
                    f"{v['critical_s']:>12.3f}{v.get('background_s', float('nan')):>14.3f}{v['kept_epochs']:>6}"
                )
            shutil.rmtree(w)
        size = bench_run_size(states, work)
        results["run_size"] = size
        print(
            "\nquickstart-sized run directory (6 trials, k=2: 3 completed resnet10t, 3 pruned mobilenetv3_small_050):"
        )
        print(f"  before (num_to_keep=2, no policy):         {size['before'] / 1e6:8.1f} MB")
        print(f"  num_to_keep=1 only:                        {size['num_to_keep_1'] / 1e6:8.1f} MB")
        print(
            f"  after the policy (fp32 weights):           {size['after'] / 1e6:8.1f} MB "
            f"({size['removed_files']} files removed)"
        )
        print(f"  after, half_precision_weights: true:       {size['after_half'] / 1e6:8.1f} MB")
        if args.sweep:
            s = bench_sweep(work, args.sweep_timeout)
            results["sweep"] = s
            print(f"\nreal quickstart sweep: exit {s['returncode']} in {s['seconds']:.0f} s, {s.get('counts')}")
            if "after_sweep" in s:
                print(
                    f"  run directory as the sweep left it: {s['after_sweep'] / 1e6:.1f} MB; after a policy pass "
                    f"(as the pipeline runs it): {s['after_policy_pass'] / 1e6:.1f} MB; removed "
                    f"{s['disk']['removed_bytes'] / 1e6:.1f} MB in {s['disk']['removed_files']} files"
                )
            else:
                print(s.get("error", ""))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
