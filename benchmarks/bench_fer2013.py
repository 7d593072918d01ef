"""The whole ferray pipeline on full FER2013: search, every ensemble method, the distilled student.

Cross-validation on FER2013's whole train split (28,709 images), holdout its official test
split (7,178 images), scored separately on PublicTest and PrivateTest (the file names say
which: ``test/<class>/PublicTest_*.jpg``), and on each without the test images that have an
exact or near duplicate in train (ferray's pHash duplicate clusters,
:func:`ferray.data.clean_holdout_mask`). The script writes a search spec (``spec.yaml``)
and runs the public stages on it: :func:`ferray.search.run_search` (Tune + Optuna TPE +
ASHA), :func:`ferray.ensemble.build_ensembles` once per method (for each method's holdout
predictions), then :func:`ferray.pipeline.finish_run` (ensemble of all methods, distilled
student, export when asked), so changes to those stages and their spec sections flow in.

Printed and written (``fer2013_<profile>.json`` / ``.md`` in ``--out``): for the best single
trial (by cross-validated fold mean), every ensemble method and the student, per holdout
subset: accuracy and macro-F1 with 95% bootstrap intervals, latency per image at batch 1
and 64 (torch eager on this machine's CPU, fold models summed), and every gain over the
best single trial with its paired bootstrap 95% interval (the same resampled holdout rows
for both models).

    python benchmarks/bench_fer2013.py --profile smoke     # a few hundred images, ~5 min
    python benchmarks/bench_fer2013.py --profile cpu       # full data, ~90 min on 2 CPUs
    python benchmarks/bench_fer2013.py --profile gpu       # full data at 48 px, one H200-class GPU
    python benchmarks/bench_fer2013.py --profile cpu --dry-run   # write the spec, print the sizes

Needs the FER2013 class folders (``$FERRAY_SHARED_DATA/fer2013`` or
``../shared/datasets/fer2013``); it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: FER2013's ``Usage`` values of the test split, in report order.
USAGES = ("PublicTest", "PrivateTest")
#: The holdout subsets scored, in report order: name -> (usage or None for both, deduplicated).
SUBSETS: dict[str, tuple[str | None, bool]] = {
    "PublicTest": ("PublicTest", False),
    "PrivateTest": ("PrivateTest", False),
    "PublicTest dedup": ("PublicTest", True),
    "PrivateTest dedup": ("PrivateTest", True),
    "test (both)": (None, False),
    "test (both) dedup": (None, True),
}
BASELINE = "best single trial"
STUDENT = "student"
N_BOOT, LEVEL = 1000, 0.95


def shared_fer2013() -> Path:
    """The FER2013 class folders: ``$FERRAY_SHARED_DATA/fer2013`` or ``../shared/datasets/fer2013``."""
    return Path(os.environ.get("FERRAY_SHARED_DATA") or REPO.parent / "shared" / "datasets") / "fer2013"


# -- profiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run; :func:`spec_dict` turns it into a search spec."""

    name: str
    expected: str  # expected wall time, in words
    size: int  # model input side in pixels (FER2013 is 48; smaller sizes are resized once, when prepared)
    train: int | None  # train images sampled (None: all 28,709)
    test: int | None  # test images sampled (None: all 7,178)
    leaked: int  # with sampling: test images with a train duplicate kept in the sample (with it)
    k: int
    backbones: tuple[str, ...]
    trials: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    max_concurrent: int | None
    batch_size: int
    student: str
    student_epochs: int
    top_k: int
    time_limit_s: float | None  # the sweep stops starting/continuing trials after this
    amp: str = "off"
    resources: dict = field(default_factory=dict)
    losses: tuple[str, ...] = ("ce", "label_smoothing")
    mixup: bool = False
    methods: tuple[str, ...] = ("greedy", "stacking", "mean", "vote")

    def describe(self) -> str:
        train = "all 28,709" if self.train is None else f"{self.train:,} (stratified sample)"
        test = (
            "all 7,178"
            if self.test is None
            else f"{self.test:,} (stratified sample, {self.leaked} more with their train duplicate)"
        )
        limit = f", sweep time limit {self.time_limit_s / 60:.0f} min" if self.time_limit_s else ""
        return (
            f"profile {self.name}: FER2013 train {train} images -> {self.k}-fold cross-validation; holdout: "
            f"test {test} images (PublicTest / PrivateTest); input {self.size}x{self.size} grey; "
            f"backbones {', '.join(self.backbones)}; {self.trials} trials x <= {self.max_epochs} epochs (TPE + "
            f"ASHA grace {self.grace_period}, reduction {self.reduction_factor}), "
            f"{self.max_concurrent or 'planner-chosen'} at once{limit}; ensemble of the top {self.top_k}: "
            f"{', '.join(self.methods)}; student {self.student} x {self.student_epochs} epochs; "
            f"expected wall time {self.expected}"
        )


PROFILES: dict[str, Profile] = {
    # Proves the script end to end: a few hundred images, tiny models, Ray start-ups dominate.
    "smoke": Profile(
        name="smoke",
        expected="3-5 min on 2 CPUs",
        size=32,
        train=300,
        test=200,
        leaked=12,
        k=2,
        backbones=("test_resnet", "mobilenetv3_small_050"),
        trials=3,
        max_epochs=2,
        grace_period=1,
        reduction_factor=2,
        max_concurrent=2,
        batch_size=64,
        student="test_resnet",
        student_epochs=2,
        top_k=3,
        time_limit_s=None,
    ),
    # Full data on 2 shared CPUs. 32 px costs ~0.45x the compute of 48 px (FER2013 models lose
    # a few points there); a trial-epoch at k=2 (28.7k images trained + 28.7k validated) is
    # ~1 min; ASHA (2, 4, 8 epochs) spends ~50 trial-epochs on 12 trials, ~60 min with the
    # trials' start-ups and final TTA predictions, then ~4 min of ensembles and ~6 min of
    # student. The sweep's time limit keeps a loaded machine near the target.
    "cpu": Profile(
        name="cpu",
        expected="~75-90 min on 2 CPUs (estimate from the README's throughputs)",
        size=32,
        train=None,
        test=None,
        leaked=0,
        k=2,
        backbones=("resnet10t", "mobilenetv3_small_050"),
        trials=12,
        max_epochs=8,
        grace_period=2,
        reduction_factor=2,
        max_concurrent=2,
        batch_size=64,
        student="mobilenetv3_small_050",
        student_epochs=8,
        top_k=5,
        time_limit_s=70 * 60,
    ),
    # One H200-class GPU, 16 CPUs: the native 48 px, 5 folds, bigger models, more trials. Ten
    # fold workers (two trials) share the GPU; amp bf16/fp16.
    "gpu": Profile(
        name="gpu",
        expected="~1.5-3 h on one H200 with 16 CPUs (estimate, not measured)",
        size=48,
        train=None,
        test=None,
        leaked=0,
        k=5,
        backbones=("resnet18", "resnet34", "convnext_atto", "efficientnet_b0"),
        trials=40,
        max_epochs=30,
        grace_period=3,
        reduction_factor=3,
        max_concurrent=2,
        batch_size=128,
        student="mobilenetv3_small_100",
        student_epochs=30,
        top_k=8,
        time_limit_s=4 * 3600,
        amp="auto",
        resources={"gpus_per_worker": 0.1},
        losses=("ce", "label_smoothing", "focal"),
        mixup=True,
    ),
}


def spec_dict(profile: Profile, source: str, *, export: bool = False, seed: int = 0) -> dict:
    """The search spec of ``profile`` over the prepared ``source`` (holdout: its test split)."""
    space: dict = {
        "optim.lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
        "optim.weight_decay": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "model.backbone": {"type": "categorical", "choices": list(profile.backbones)},
        "loss.name": {"type": "categorical", "choices": list(profile.losses)},
        "augment.strength": {"type": "float", "low": 0.2, "high": 0.7},
    }
    if "label_smoothing" in profile.losses:
        space["loss.label_smoothing"] = {
            "type": "float",
            "low": 0.05,
            "high": 0.2,
            "when": {"loss.name": "label_smoothing"},
        }
    if "focal" in profile.losses:
        space["loss.focal_gamma"] = {"type": "float", "low": 1.0, "high": 3.0, "when": {"loss.name": "focal"}}
    if profile.mixup:
        space["augment.mixup_alpha"] = {"type": "categorical", "choices": [0.0, 0.2, 0.4]}
        space["model.drop_rate"] = {"type": "float", "low": 0.0, "high": 0.4, "step": 0.1}
    run: dict = {"batch_size": profile.batch_size, "metric": "accuracy", "amp": profile.amp}
    if profile.amp == "off":
        run["channels_last"] = False
    return {
        "name": f"bench-fer2013-{profile.name}",
        "data": {"source": source, "size": profile.size, "channels": 1},
        "folds": {"k": profile.k, "seed": seed, "holdout": "test", "group_duplicates": True},
        "model": {"backbone": profile.backbones[0], "pretrained": False},
        "augment": {"strength": 0.4, "tta": ["hflip"]},
        "optim": {"name": "adamw", "schedule": {"name": "cosine", "warmup_epochs": 0}},
        "run": run,
        "resources": dict(profile.resources),
        "space": space,
        "budget": {
            "trials": profile.trials,
            "max_epochs": profile.max_epochs,
            "grace_period": profile.grace_period,
            "reduction_factor": profile.reduction_factor,
            "early_stopping": True,
            "max_concurrent": profile.max_concurrent,
            "time_limit_s": profile.time_limit_s,
        },
        "search": {"sampler": "tpe", "seed": seed, "n_startup_trials": max(2, min(10, profile.trials // 3))},
        "ensemble": {
            "enabled": True,
            "export": export,
            "top_k": profile.top_k,
            "methods": list(profile.methods),
            "seed": seed,
        },
        "distill": {"enabled": True, "student": profile.student, "epochs": profile.student_epochs},
    }


def spec_yaml(profile: Profile, source: str, *, export: bool = False, seed: int = 0) -> str:
    import yaml

    head = f"# written by benchmarks/bench_fer2013.py --profile {profile.name}\n"
    return head + yaml.safe_dump(spec_dict(profile, source, export=export, seed=seed), sort_keys=False)


# -- data --------------------------------------------------------------------------------------


def usage_of(ids: Sequence[str], splits: Sequence[str] | None = None) -> np.ndarray:
    """FER2013's ``Usage`` of each test row: ``PublicTest`` or ``PrivateTest``.

    Read from the file name (``test/angry/PublicTest_123.jpg``, the Kaggle folder layout);
    rows whose name carries neither fall back to the split FER2013's CSV gives them
    (``val`` -> PublicTest, ``test`` -> PrivateTest).

    Raises:
        ValueError: a row with neither a usage in its name nor a val/test split.
    """
    out = np.empty(len(ids), dtype=object)
    fallback = {"val": "PublicTest", "test": "PrivateTest"}
    for i, row_id in enumerate(ids):
        m = re.search(r"(PublicTest|PrivateTest)", str(row_id))
        usage = m.group(1) if m else (fallback.get(str(splits[i])) if splits is not None else None)
        if usage is None:
            raise ValueError(
                f"row {i} ({row_id!r}) names neither PublicTest nor PrivateTest"
                + (f" and its split is {splits[i]!r}" if splits is not None else "")
                + "; FER2013's test images are named <Usage>_<n>.jpg"
            )
        out[i] = usage
    return out


def holdout_subsets(usage: np.ndarray, clean: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over the holdout rows for each subset of :data:`SUBSETS`.

    ``clean`` is ``True`` for holdout rows without an exact or near duplicate among the
    cross-validation (train) rows.
    """
    usage, clean = np.asarray(usage), np.asarray(clean, bool)
    if usage.shape != clean.shape:
        raise ValueError(f"usage has {len(usage)} rows but clean has {len(clean)}")
    out = {}
    for name, (which, dedup) in SUBSETS.items():
        mask = np.ones(len(usage), bool) if which is None else usage == which
        out[name] = mask & clean if dedup else mask
    return out


def sample_rows(
    splits: np.ndarray,
    labels: np.ndarray,
    n_train: int | None,
    n_test: int | None,
    *,
    leak_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    n_leaked: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Sorted row indices: stratified samples of ``train`` and ``test`` (``None``: every row).

    ``leak_pairs`` are (test row, train row) duplicates; ``n_leaked`` of them are added whole,
    so that a small sample still has test rows with a duplicate in train.
    """
    rng = np.random.default_rng(seed)
    splits, labels = np.asarray(splits).astype(str), np.asarray(labels)
    keep: set[int] = set()
    if leak_pairs is not None and n_leaked:
        a, b = leak_pairs
        pick = rng.choice(len(a), size=min(n_leaked, len(a)), replace=False)
        keep.update(np.asarray(a)[pick].tolist())
        keep.update(np.asarray(b)[pick].tolist())
    for split, n in (("train", n_train), ("test", n_test)):
        rows = np.flatnonzero(splits == split)
        if n is None or n >= len(rows):
            keep.update(rows.tolist())
            continue
        for c in np.unique(labels[rows]):
            members = rows[labels[rows] == c]
            share = max(1, round(n * len(members) / len(rows)))
            keep.update(rng.choice(members, size=min(share, len(members)), replace=False).tolist())
    return np.asarray(sorted(keep), np.int64)


def prepare(profile: Profile, cache: Path, seed: int = 0, echo=print) -> tuple[str, str]:
    """FER2013 (or the profile's sample of it) as prepared Parquet files in ``cache``.

    Returns ``(run source, native source)``: the same rows at the profile's input size (what
    the sweep trains on) and at FER2013's native 48 px (where the holdout's duplicates of
    train images are found, so every profile drops the same test images).
    """
    from ferray.data import load_source, write_parquet
    from ferray.imaging import resize_array

    tag = (
        "full"
        if profile.train is None and profile.test is None
        else f"{profile.train}-{profile.test}-{profile.leaked}-{seed}"
    )
    native, run = cache / f"fer2013-48-{tag}.parquet", cache / f"fer2013-{profile.size}-{tag}.parquet"
    if native.is_file() and run.is_file():
        return str(run), str(native)
    root = shared_fer2013()
    echo(f"decoding {root} (once; cached in {cache})")
    full = load_source(str(root), size=48, channels=1)
    if tag != "full":
        from ferray.data import duplicate_pairs

        a, b = duplicate_pairs(full)
        split = full.splits.astype(str)
        test_a = (split[a] == "test") & (split[b] == "train")
        test_b = (split[b] == "test") & (split[a] == "train")
        pairs = (np.concatenate([a[test_a], b[test_b]]), np.concatenate([b[test_a], a[test_b]]))
        full = full.subset(
            sample_rows(
                full.splits,
                full.labels,
                profile.train,
                profile.test,
                leak_pairs=pairs,
                n_leaked=profile.leaked,
                seed=seed,
            )
        )
    write_parquet(full, native)
    # The JPEGs are 48 px: resizing the decoded array is what load_source(size=...) does to them.
    write_parquet(dataclasses.replace(full, images=resize_array(full.images, profile.size, 1)), run)
    return str(run), str(native)


# -- scores ------------------------------------------------------------------------------------


def score_table(
    labels: np.ndarray,
    probs: Mapping[str, np.ndarray],
    subsets: Mapping[str, np.ndarray],
    *,
    baseline: str = BASELINE,
    num_classes: int | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    latency: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict]:
    """One row per (subset, model): accuracy, macro-F1, their intervals and the gains over ``baseline``.

    Every model of a subset is scored on the same bootstrap resamples (one ``seed``), and each
    gain is ``metric(model) - metric(baseline)`` with its paired bootstrap interval
    (:func:`ferray.metrics.paired_bootstrap_metrics`): the same resampled rows for
    both models. ``latency`` adds ``latency_ms_batch_1`` / ``latency_ms_batch_64`` per model.
    """
    from ferray.metrics import bootstrap_metrics, paired_bootstrap_metrics

    if baseline not in probs:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(probs)}")
    labels = np.asarray(labels, np.int64)
    c = num_classes or next(iter(probs.values())).shape[1]
    rows = []
    for subset, mask in subsets.items():
        mask = np.asarray(mask, bool)
        y = labels[mask]
        base = np.asarray(probs[baseline])[mask]
        for name, p in probs.items():
            p = np.asarray(p)[mask]
            ci = bootstrap_metrics(y, p, num_classes=c, n_boot=n_boot, level=level, seed=seed)
            row = {"subset": subset, "rows": int(mask.sum()), "model": name}
            for m in ("accuracy", "macro_f1"):
                row[m], row[f"{m}_low"], row[f"{m}_high"] = ci[m]
            if name == baseline:
                gains = None
            else:
                gains = paired_bootstrap_metrics(y, p, base, num_classes=c, n_boot=n_boot, level=level, seed=seed)
            for m in ("accuracy", "macro_f1"):
                g = gains[m] if gains is not None else (None, None, None)
                row[f"gain_{m}"], row[f"gain_{m}_low"], row[f"gain_{m}_high"] = g
            for b in ("batch_1", "batch_64"):
                row[f"latency_ms_{b}"] = (latency or {}).get(name, {}).get(b)
            rows.append(row)
    return rows


def _num(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _ci(row: dict, key: str, scale: float = 1.0, fmt: str = ".4f", signed: bool = False) -> str:
    v, lo, hi = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if v is None:
        return "-"
    sign = "+" if signed else ""
    return (
        f"{format(scale * v, sign + fmt)} [{format(scale * lo, sign + fmt)}, {format(scale * hi, sign + fmt)}]"
        if lo is not None and math.isfinite(lo)
        else format(scale * v, sign + fmt)
    )


_COLUMNS = (
    "model",
    "accuracy [95% CI]",
    "macro-F1 [95% CI]",
    "gain acc, points [paired 95% CI]",
    "gain F1, points [paired 95% CI]",
    "ms/img b1",
    "ms/img b64",
)


def _cells(row: dict) -> list[str]:
    return [
        row["model"],
        _ci(row, "accuracy"),
        _ci(row, "macro_f1"),
        _ci(row, "gain_accuracy", 100, ".1f", signed=True),
        _ci(row, "gain_macro_f1", 100, ".1f", signed=True),
        _num(row["latency_ms_batch_1"], ".2f"),
        _num(row["latency_ms_batch_64"], ".3f"),
    ]


def _by_subset(rows: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["subset"], []).append(r)
    return out


def format_table(rows: Sequence[dict]) -> str:
    """The rows as plain-text tables, one per holdout subset."""
    lines = []
    for subset, group in _by_subset(rows).items():
        cells = [list(_COLUMNS)] + [_cells(r) for r in group]
        width = [max(len(c[i]) for c in cells) for i in range(len(_COLUMNS))]
        lines.append(f"{subset} ({group[0]['rows']:,} images)")
        for j, c in enumerate(cells):
            padded = (s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(c, width)))
            lines.append("  " + "  ".join(padded))
            if j == 0:
                lines.append("  " + "  ".join("-" * w for w in width))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows as Markdown tables, one per holdout subset."""
    out = []
    for subset, group in _by_subset(rows).items():
        out.append(f"**{subset}** ({group[0]['rows']:,} images)\n")
        out.append("| " + " | ".join(_COLUMNS) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|")
        out += ["| " + " | ".join(_cells(r)) + " |" for r in group]
        out.append("")
    return "\n".join(out)


def members_used(method_summary: Mapping, members: Sequence[str]) -> list[str]:
    """The trials a fitted method's predictions depend on: those with a non-zero weight, else all.

    ``method_summary`` is the method's entry in ``ensemble.json``; its own ``members`` (aligned
    with its ``weights``) win over ``members``, the report's.
    """
    names = list(method_summary.get("members") or members)
    weights = method_summary.get("weights")
    if weights is None:
        return names
    if len(weights) != len(names):
        raise ValueError(f"{len(weights)} weights for {len(names)} members {names}")
    return [m for m, w in zip(names, weights) if w]


# -- the run -----------------------------------------------------------------------------------


def _holdout(path: Path):
    from ferray.run.predictions import read_predictions

    return read_predictions(path).row_means()


def latency_of(
    folders: Mapping[str, Path], input_shape: tuple[int, int, int], *, threads: int = 1, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """ms per image at batch 1 and 64 of each folder's fold models together (a trial's k, a student's 1).

    Measured with ``threads`` torch threads (1: steady on a machine that other work shares,
    where two threads at batch 1 wait on each other), longer than ferray's default timing.
    """
    import torch

    from ferray.distill import group_latency
    from ferray.training import load_fold_models

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {
            name: group_latency(
                load_fold_models(folder, device=device),
                input_shape,
                device=device,
                min_repeats=10,
                min_seconds=1.0,
                max_repeats=200,
            )
            for name, folder in folders.items()
        }
    finally:
        torch.set_num_threads(before)


def run_benchmark(
    profile: Profile,
    work: Path,
    cache: Path,
    *,
    num_cpus: int | None = None,
    export: bool = False,
    seed: int = 0,
    n_boot: int = N_BOOT,
    latency_threads: int = 1,
    echo: Callable[[str], object] = print,
) -> dict:
    """Prepare the data, run the pipeline on a written spec, score it; return every figure."""
    import ray
    import torch

    from ferray.data import FoldPlan, clean_holdout_mask, read_parquet
    from ferray.ensemble import build_ensembles
    from ferray.pipeline import ensemble_members_available, finish_run
    from ferray.run.layout import EnsembleLayout, RunLayout
    from ferray.runtime import ensure_ray
    from ferray.search import run_search

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    source, native = prepare(profile, cache, seed=seed, echo=echo)
    timings["data"] = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "spec.yaml"
    spec_path.write_text(spec_yaml(profile, source, export=export, seed=seed))
    echo(f"spec: {spec_path}")
    device = "cuda" if profile.name == "gpu" and torch.cuda.is_available() else "cpu"
    shape = (1, profile.size, profile.size)

    ensure_ray(num_cpus=num_cpus, log_to_driver=False)
    try:
        t = time.perf_counter()
        result = run_search(spec_path, run_dir=work / "run", live=False, echo=echo)
        timings["sweep"] = time.perf_counter() - t
        run = RunLayout(result.run_dir)
        available = ensemble_members_available(run.root)
        if not available:
            raise SystemExit(f"no trial completed with predictions ({result.status['counts']}); see {run.log}")
        top = min(profile.top_k, available)

        # Each method alone, for its own holdout predictions (ensemble/ keeps only the chosen one's).
        t = time.perf_counter()
        per_method, method_members, baseline = {}, {}, None
        for m in profile.methods:
            report = build_ensembles(run.root, top=top, methods=[m], echo=None)
            per_method[m] = _holdout(EnsembleLayout(run.ensemble).holdout)
            method_members[m] = (getattr(report, "method_members", None) or {}).get(m) or members_used(
                report.summary["methods"][m], report.members
            )
            baseline = getattr(report, "baseline", None) or report.summary.get("baseline") or report.members[0]
            echo(
                f"ensemble {m}: holdout accuracy {report.row(m)['holdout_accuracy']:.4f} "
                f"({len(method_members[m])} member(s): {', '.join(method_members[m])})"
            )
        timings["ensembles_one_by_one"] = time.perf_counter() - t

        # Before finish_run: its retention step deletes the weights of trials its chosen ensemble left out.
        t = time.perf_counter()
        trials = [baseline] + sorted({u for used in method_members.values() for u in used} - {baseline})
        echo(f"measuring latency of {len(trials)} trial(s) ({device}, {latency_threads} torch thread(s))")
        per_model = latency_of(
            {tid: run.trial(tid).root for tid in trials}, shape, threads=latency_threads, device=device
        )
        timings["latency"] = time.perf_counter() - t

        t = time.perf_counter()
        done = finish_run(run.root, num_cpus=num_cpus, echo=echo)
        timings["finish"] = time.perf_counter() - t
        timings.update({f"finish_{k}": v for k, v in done.seconds.items()})
    finally:
        ray.shutdown()

    report = done.ensemble
    preds = {BASELINE: _holdout(run.trial(baseline).holdout), **per_method}
    student = None
    if done.distill is not None:
        preds[STUDENT] = _holdout(done.distill.holdout_path)
        t = time.perf_counter()
        per_model.update(latency_of({STUDENT: done.distill.output_dir}, shape, threads=latency_threads, device=device))
        timings["latency"] += time.perf_counter() - t
        d = done.distill.summary
        student = {
            "backbone": (d.get("training") or {}).get("student", profile.student),
            "epochs": (d.get("training") or {}).get("epochs", profile.student_epochs),
            "params": (d.get("student") or {}).get("params"),
            "teacher": {
                k: v for k, v in (d.get("teacher") or {}).items() if k in ("mode", "method", "members", "oof_accuracy")
            },
        }

    # Align every model on the holdout rows of the best trial.
    ref = preds[BASELINE]
    probs = {}
    for name, p in preds.items():
        if not np.array_equal(p.rows, ref.rows):
            raise SystemExit(f"{name}: holdout predictions for other rows than the best trial's")
        probs[name] = p.probs
    data48 = read_parquet(native)
    plan = FoldPlan.load(run.folds)
    plan.check_matches(data48)
    clean = clean_holdout_mask(data48, plan.fold, plan.near_distance)[ref.rows]
    usage = usage_of(data48.ids[ref.rows].astype(str), data48.splits[ref.rows].astype(str))
    subsets = holdout_subsets(usage, clean)

    latency = {BASELINE: per_model[baseline]}
    for m, used in method_members.items():
        latency[m] = {b: sum(per_model[u][b] for u in used) for b in ("batch_1", "batch_64")}
    if STUDENT in per_model:
        latency[STUDENT] = per_model[STUDENT]

    t = time.perf_counter()
    rows = score_table(
        ref.labels, probs, subsets, num_classes=len(data48.class_names), n_boot=n_boot, seed=seed, latency=latency
    )
    timings["scores"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    counts = result.status.get("counts", {})
    params = next(
        (tr.get("params", {}) for tr in result.status.get("trials", []) if tr.get("trial_id") == baseline), {}
    )
    return {
        "profile": dataclasses.asdict(profile),
        "spec": str(spec_path),
        "run_dir": str(run.root),
        "source": source,
        "native_source": native,
        "sizes": {
            "train_rows": np.count_nonzero(plan.fold >= 0),
            "holdout_rows": len(ref.rows),
            **{f"{s}_rows": int(m.sum()) for s, m in subsets.items()},
            "holdout_with_train_duplicate": int((~clean).sum()),
            "fold_plan_holdout_leaks": int(plan.holdout_leaks),
            "near_distance": int(plan.near_distance),
        },
        "trials": {k.lower(): int(v) for k, v in counts.items()},
        "best_single": {"trial_id": baseline, "params": params},
        "methods_members": method_members,
        "chosen": report.chosen,
        "chosen_members": list(report.members),
        "ensemble_comparison": report.comparison,
        "student": student,
        "bundle": None if done.bundle is None else str(done.bundle),
        "latency": {
            "device": device,
            "torch_threads": latency_threads,
            "per_model_ms_per_image": per_model,
            "how": "ferray.distill.group_latency: torch eager fp32, one pass per fold model (no TTA), "
            "median of >= 10 timed runs; a trial costs its k fold models, an ensemble the fold "
            "models of the trials it uses",
        },
        "n_boot": n_boot,
        "level": LEVEL,
        "seed": seed,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "rows": rows,
    }


def summary_lines(figures: dict) -> list[str]:
    """What a run was: sizes, trials, members, student, wall time, how the figures were made."""
    s, t, lat = figures["sizes"], figures["timings_s"], figures["latency"]
    trials = ", ".join(f"{n} {k}" for k, n in figures["trials"].items())
    uses = "; ".join(f"{m} {', '.join(u)}" for m, u in figures["methods_members"].items())
    lines = [
        (
            f"{figures['profile']['name']} profile: {s['train_rows']:,} train rows in cross-validation, "
            f"{s['holdout_rows']:,} test rows held out ({s['holdout_with_train_duplicate']} with an exact or near "
            f"duplicate in train, pHash <= {s['near_distance']} bits); trials: {trials}"
        ),
        (
            f"best single trial (by fold mean): {figures['best_single']['trial_id']} "
            f"{json.dumps(figures['best_single']['params'], default=str)}"
        ),
        f"trials each method uses: {uses}; chosen by ferray (lowest OOF log-loss): {figures['chosen']}",
    ]
    student = figures.get("student")
    if student and student.get("params"):
        lines.append(f"student: {student['backbone']}, {student['params']:,} parameters, {student['epochs']} epochs")
    export = " + export" if figures.get("bundle") else ""
    lines.append(
        f"wall time: {t['total']:.0f} s (data {t.get('data', 0):.0f}, sweep {t.get('sweep', 0):.0f}, "
        f"ensembles one by one {t.get('ensembles_one_by_one', 0):.0f}, latency {t.get('latency', 0):.0f}, "
        f"ensemble + distill{export} {t.get('finish', 0):.0f})"
    )
    lines.append(
        f"[95% bootstrap intervals, {figures['n_boot']} resamples; gains: model minus best single trial, "
        f"paired bootstrap on the same resampled rows; latency: ms per image, torch eager on "
        f"{lat['device']}, {lat['torch_threads']} thread(s)]"
    )
    return lines


def summary_text(figures: dict) -> str:
    """The header lines and the tables printed after a run."""
    return "\n".join(summary_lines(figures)) + "\n\n" + format_table(figures["rows"])


def write_outputs(figures: dict, out: Path) -> tuple[Path, Path]:
    """``fer2013_<profile>.json`` and ``.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    name = figures["profile"]["name"]
    js, md = out / f"fer2013_{name}.json", out / f"fer2013_{name}.md"
    js.write_text(json.dumps(figures, indent=2, default=str))
    head = "\n".join(summary_lines(figures))
    md.write_text(f"# FER2013 benchmark, profile {name}\n\n```\n{head}\n```\n\n{markdown_table(figures['rows'])}")
    return js, md


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Profiles: " + "; ".join(f"{n}: {pr.expected}" for n, pr in PROFILES.items()),
    )
    p.add_argument("--profile", choices=list(PROFILES), default="smoke")
    p.add_argument("--trials", type=int, default=None, help="override the profile's trial count")
    p.add_argument("--max-epochs", type=int, default=None, help="override the profile's epochs per trial")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="run folder (spec, run); default /tmp/ferray-bench-fer2013/<profile>-<time>",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/ferray-bench-fer2013/cache"),
        help="where the prepared Parquet file is kept between runs",
    )
    p.add_argument("--out", type=Path, default=None, help="where the JSON and Markdown tables go; default WORK")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--export", action="store_true", help="also export the bundle (ensemble.export)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples")
    p.add_argument("--latency-threads", type=int, default=1, help="torch threads while timing latency")
    p.add_argument("--dry-run", action="store_true", help="write and check the spec, print the sizes, run nothing")
    args = p.parse_args(argv)

    profile = PROFILES[args.profile]
    overrides = {k: v for k, v in (("trials", args.trials), ("max_epochs", args.max_epochs)) if v is not None}
    if overrides:
        profile = dataclasses.replace(profile, **overrides)
    work = args.work or Path("/tmp/ferray-bench-fer2013") / f"{profile.name}-{datetime.now():%Y%m%d-%H%M%S}"
    out = args.out or work
    print(profile.describe(), flush=True)
    if args.dry_run:
        from ferray.search import load_search_spec

        work.mkdir(parents=True, exist_ok=True)
        path = work / "spec.yaml"
        path.write_text(
            spec_yaml(
                profile, str(args.cache / f"fer2013-{profile.size}-full.parquet"), export=args.export, seed=args.seed
            )
        )
        load_search_spec(path)
        print(f"spec checked: {path}")
        return 0
    if not shared_fer2013().is_dir():
        print(
            f"{shared_fer2013()} not found: this benchmark needs the FER2013 class folders (set FERRAY_SHARED_DATA)",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()

    def echo(line: str) -> None:
        print(f"[{time.perf_counter() - start:7.0f}s] {line}", flush=True)

    figures = run_benchmark(
        profile,
        work,
        args.cache,
        num_cpus=args.num_cpus,
        export=args.export,
        seed=args.seed,
        n_boot=args.n_boot,
        latency_threads=args.latency_threads,
        echo=echo,
    )
    print()
    print(summary_text(figures))
    js, md = write_outputs(figures, out)
    print(f"written: {js}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
