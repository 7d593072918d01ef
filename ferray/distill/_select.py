"""Choosing the student among candidate backbones: a latency cap, then accuracy on one fold.

``distill.student`` may list candidates. Before Ray starts, each is built (random init: the
cost of a forward pass does not depend on the weights) and timed at batch 1 on this
machine's CPU (:func:`candidate_latencies`) by the protocol a trial's ``latency_ms`` is
measured with (:data:`ferray.training.cost.LATENCY_PROTOCOL`); ``distill.max_latency_ms``, or
else the ensemble's budget ``ensemble.max_latency_ms`` (:func:`latency_cap`), drops the slower
ones (:func:`apply_latency_cap`). Of several left, each is trained on the cross-validation
rows outside one fold of the fold plan and scored against that fold's hard labels; the
best (:func:`pick_candidate`) is then trained on every cross-validation row. The holdout
plays no part in the choice: it stays the test of the one student finally trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ferray.errors import ConfigError

__all__ = ["candidate_latencies", "apply_latency_cap", "latency_cap", "pick_candidate", "selection_fold"]


def latency_cap(distill_ms: float | None, ensemble_ms: float | None) -> tuple[float | None, str | None]:
    """``(cap, where it comes from)`` of the student candidates' batch-1 latency.

    ``distill_ms`` (``distill.max_latency_ms``, or ``--max-latency-ms`` over it) wins; without
    it the ensemble's budget ``ensemble_ms`` (``ensemble.max_latency_ms``) caps the student as
    it capped the ensemble; ``(None, None)``: no cap.

    >>> latency_cap(None, 12.0)
    (12.0, 'ensemble.max_latency_ms')
    """
    if distill_ms is not None:
        return distill_ms, "distill.max_latency_ms"
    if ensemble_ms is not None:
        return ensemble_ms, "ensemble.max_latency_ms"
    return None, None


def candidate_latencies(
    candidates: Sequence[str], build: Callable[[str], object], input_shape: tuple[int, int, int], **kwargs
) -> dict[str, float]:
    """``{name: ms per image at batch 1}`` of each candidate model ``build(name)`` returns.

    Timed as a trial's ``latency_ms`` is (:data:`~ferray.training.cost.LATENCY_PROTOCOL`:
    fixed untimed and timed batches of one image, the median); ``kwargs`` override it.
    """
    import torch

    from ferray.distill._bench import measure_latency
    from ferray.training.cost import LATENCY_PROTOCOL

    warmup, repeats = LATENCY_PROTOCOL[1]
    kwargs = {"warmup": warmup, "min_repeats": repeats, "max_repeats": repeats, "min_seconds": 0.0, **kwargs}

    out = {}
    for name in candidates:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build(name)
        out[name] = measure_latency(model, input_shape, 1, **kwargs)
        del model
    return out


def apply_latency_cap(
    latencies: dict[str, float], cap: float | None, *, where: str = "distill.max_latency_ms"
) -> tuple[list[str], list[str]]:
    """``(kept, dropped)`` candidate names, in the given order: kept ones run within ``cap`` ms.

    Raises:
        ConfigError: no candidate is within the cap; the message lists every measured latency.
    """
    if cap is None:
        return list(latencies), []
    kept = [n for n, ms in latencies.items() if ms <= cap]
    dropped = [n for n in latencies if n not in kept]
    if not kept:
        figures = ", ".join(f"{n} {ms:.3g} ms" for n, ms in latencies.items())
        raise ConfigError(
            f"{where} is {cap:g}, but no student candidate is that fast at batch 1 on this CPU "
            f"(measured: {figures}); raise {where} or add a smaller backbone to distill.student"
        )
    return kept, dropped


def pick_candidate(scores: dict[str, float], latencies: dict[str, float] | None = None) -> str:
    """The candidate with the highest selection accuracy; ties go to the faster, then the first listed."""
    if not scores:
        raise ValueError("no candidate scores to pick from")
    order = {n: i for i, n in enumerate(scores)}
    lat = latencies or {}

    def key(name: str) -> tuple:
        acc = scores[name]
        acc = acc if np.isfinite(acc) else -np.inf
        return -acc, lat.get(name, np.inf), order[name]

    return min(scores, key=key)


def selection_fold(fold: np.ndarray, cv_rows: np.ndarray) -> int:
    """The fold the candidates are scored on: the lowest fold id of the cross-validation rows."""
    return int(np.min(np.asarray(fold)[cv_rows]))
