"""What a model costs to run: latency, parameters and multiply-accumulates (MACs).

The search's cost objectives (``search.objectives``: ``latency_ms``, ``latency_ms_b64``,
``params``, ``macs``) and distillation's latency cap read these figures:

* latency is torch eager on the CPU of the calling machine, the model in eval mode, on
  batches of seeded random images: ``warmup`` untimed forward passes, then the median of
  the timed ones (:func:`measure_latency`). :func:`measure_cost` is the fixed protocol a
  trial uses (:data:`LATENCY_PROTOCOL`), and records ``torch.get_num_threads()`` with it,
  since latency depends on the threads a process may use;
* parameters count every element of every parameter (:func:`count_params`);
* MACs are a deterministic proxy for compute: the multiply-accumulates of the model's
  convolution and linear layers in one forward pass of one image, counted with forward
  hooks (:func:`count_macs`). Attention products, normalisation and activations are not
  counted.

The model is never changed: its mode is restored, and a model on another device than the
CPU is timed on a CPU copy.

>>> import torch
>>> count_macs(torch.nn.Linear(10, 3), (10,))
30
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["measure_latency", "count_params", "count_macs", "measure_cost", "LATENCY_PROTOCOL", "COST_KEYS"]

#: The latency protocol of a trial: batch size -> (untimed warm-up passes, timed passes).
LATENCY_PROTOCOL = {1: (3, 15), 64: (1, 3)}

#: Keys :func:`measure_cost` returns (and a trial reports): the cost objectives' values and the
#: torch threads the latencies were measured with.
COST_KEYS = ("params", "macs", "latency_ms", "latency_ms_b64", "latency_threads")


def count_params(model: nn.Module | Sequence[nn.Module]) -> int:
    """Parameters of ``model`` (of every model together, given several)."""
    models = [model] if isinstance(model, nn.Module) else list(model)
    return int(sum(p.numel() for m in models for p in m.parameters()))


@contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` when it lives on the CPU, else a CPU copy (the trained model stays where it is)."""
    if all(p.device.type == "cpu" for p in model.parameters()) and all(b.device.type == "cpu" for b in model.buffers()):
        return model
    return copy.deepcopy(model).cpu()


def _input(batch_size: int, input_shape: tuple[int, ...]) -> torch.Tensor:
    # A fixed generator: measuring never draws from the global RNG (training stays reproducible).
    return torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))


@torch.inference_mode()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the convolution and linear layers of ``model`` for one input.

    ``input_shape`` is one input's shape without the batch (``(C, H, W)`` for images). A
    convolution costs ``output elements x in_channels / groups x kernel elements``, a
    linear layer ``output elements x in_features``; other layers count nothing.
    """
    model = _on_cpu(model)
    total = 0

    def conv(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = (module.in_channels // module.groups) * int(np.prod(module.kernel_size))
        total += int(output.numel()) * per_output

    def linear(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += int(output.numel()) * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear))
    try:
        with _eval_mode(model):
            model(_input(1, input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int,
    *,
    warmup: int = 2,
    min_repeats: int = 3,
    max_repeats: int = 20,
    min_seconds: float = 0.3,
    device: str | torch.device = "cpu",
) -> float:
    """Median milliseconds per image of ``model`` in eval mode on batches of ``batch_size`` random images.

    Runs ``warmup`` untimed batches, then timed batches until ``min_repeats`` ran and
    ``min_seconds`` passed (at most ``max_repeats``); ``min_repeats == max_repeats`` times a
    fixed number of batches. On ``device`` (default the CPU; a model elsewhere is copied).
    """
    target = torch.device(device)
    if target.type == "cpu":
        model = _on_cpu(model)
    elif any(p.device != target for p in model.parameters()):
        model = copy.deepcopy(model).to(target)
    x = _input(batch_size, input_shape).to(target)
    sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)
    with _eval_mode(model):
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


def measure_cost(model: nn.Module, input_shape: tuple[int, ...], *, latency: bool = True) -> dict:
    """A trial's cost figures (:data:`COST_KEYS`) on this machine's CPU, by the fixed protocol.

    ``latency_ms`` is the median of batch-1 passes (ms per image), ``latency_ms_b64`` the
    median of passes over a batch of 64 (ms per batch), ``latency_threads`` the torch threads
    they ran with; ``latency=False`` leaves the three out (parameters and MACs only).
    """
    cpu_model = _on_cpu(model)
    out: dict = {"params": count_params(cpu_model), "macs": count_macs(cpu_model, input_shape)}
    if latency:
        for batch, key in ((1, "latency_ms"), (64, "latency_ms_b64")):
            warmup, repeats = LATENCY_PROTOCOL[batch]
            per_image = measure_latency(
                cpu_model, input_shape, batch, warmup=warmup, min_repeats=repeats, max_repeats=repeats, min_seconds=0
            )
            out[key] = per_image * batch
        out["latency_threads"] = int(torch.get_num_threads())
    return out
