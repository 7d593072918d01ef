"""What the student costs and scores next to the ensemble and the best single trial.

Latency is torch eager on the calling machine's CPU (or the device given), one forward
pass per model per image (no TTA), after warm-up runs; a group of models (a trial's k
fold models, an ensemble's members' fold models) costs the sum of its models' latencies,
as they run one after another.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ferray.metrics import accuracy, macro_f1
from ferray.run.predictions import Predictions

__all__ = ["count_parameters", "measure_latency", "group_latency", "holdout_scores"]


def count_parameters(models: Sequence[nn.Module]) -> int:
    """Parameters of every model together."""
    return int(sum(p.numel() for m in models for p in m.parameters()))


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    *,
    warmup: int = 2,
    min_repeats: int = 3,
    max_repeats: int = 20,
    min_seconds: float = 0.3,
    device: str | torch.device = "cpu",
) -> float:
    """Median milliseconds per image of ``model`` on batches of ``batch_size`` random images.

    Runs ``warmup`` untimed batches, then timed batches until ``min_repeats`` ran and
    ``min_seconds`` passed (at most ``max_repeats``).
    """
    model = model.eval().to(device)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_seconds):
        t = time.perf_counter()
        model(x)
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000.0 / batch_size


def group_latency(
    models: Sequence[nn.Module], input_shape: tuple[int, int, int], batch_sizes: Sequence[int] = (1, 64), **kwargs
) -> dict[str, float]:
    """``{"batch_1": ms, "batch_64": ms}`` per image for running every model of ``models``."""
    return {f"batch_{b}": float(sum(measure_latency(m, input_shape, b, **kwargs) for m in models)) for b in batch_sizes}


def holdout_scores(pred: Predictions, num_classes: int) -> dict:
    """Accuracy and macro-F1 of holdout predictions (fold models' probabilities averaged per row)."""
    mean = pred.row_means()
    return {
        "holdout_rows": int(len(mean.rows)),
        "accuracy": accuracy(mean.labels, mean.probs),
        "macro_f1": macro_f1(mean.labels, mean.probs, num_classes=num_classes),
    }
