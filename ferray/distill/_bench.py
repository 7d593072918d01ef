"""What the student costs and scores next to the ensemble and the best single trial.

Latency is :func:`ferray.training.cost.measure_latency`: torch eager on the calling
machine's CPU (or the device given), one forward pass per model per image (no TTA), after
warm-up runs; a group of models (a trial's k fold models, an ensemble's members' fold
models) costs the sum of its models' latencies, as they run one after another.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ferray.metrics import accuracy, macro_f1
from ferray.run.predictions import Predictions
from ferray.training.cost import count_params, measure_latency

__all__ = ["count_parameters", "measure_latency", "group_latency", "holdout_scores"]


def count_parameters(models: Sequence[nn.Module]) -> int:
    """Parameters of every model together."""
    return count_params(list(models))


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
