"""PyTorch module -> an ``.onnx`` file, checked against PyTorch eager.

torch >= 2.9 exports through ``torch.export`` (``dynamo=True``, the default; needs
onnxscript) and writes weights to a side ``.onnx.data`` file unless
``external_data=False``. Weights are embedded (protobuf caps a file at 2 GiB: larger graphs
keep their ``.onnx.data``); the bundle writer then points them at its weights files
(:mod:`ferray.export._external`). The exporter's optimiser is off (``optimize=False``): it
folds batch norms into convolutions, which changes the weights' bytes so that no weights
file holds them any more; onnxruntime does the same fusion when it loads the graph. When
``torch.export`` cannot capture a model, the TorchScript exporter (``dynamo=False``) is
tried; the manifest records which one wrote each graph.

The batch dimension is symbolic (``batch``). Tracing uses a batch of 2: ``torch.export``
specialises dimensions of size 1 to constants.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ferray.export._external import EMBED_LIMIT

__all__ = ["INPUT_NAME", "TOLERANCE", "ExportError", "check_onnx", "export_onnx"]

logger = logging.getLogger(__name__)

#: Largest accepted ``max |onnxruntime - PyTorch|`` over every output.
TOLERANCE = 1e-4
INPUT_NAME = "images"
_TRACE_BATCH = 2


class ExportError(RuntimeError):
    """A graph could not be exported, or its ONNX outputs disagree with PyTorch's."""


def _param_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def export_onnx(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    size: int,
    channels: int,
    output_names: list[str],
    what: str,
    opset: int | None = None,
) -> dict:
    """Export ``module`` (``uint8 (N, size, size, channels)`` -> outputs) to ``path``.

    Returns ``{"exporter": "dynamo"|"torchscript", "opset": int, "ir_version": int,
    "external_data": bool}``; ``"fallback_reason"`` says why the dynamo exporter was not used.

    Raises:
        ExportError: neither exporter could export the module (the message names ``what``).
    """
    module = module.eval()
    path = Path(path)
    example = torch.randint(
        0, 256, (_TRACE_BATCH, size, size, channels), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    external = _param_bytes(module) > EMBED_LIMIT
    info: dict = {"external_data": external}
    try:
        batch = torch.export.Dim("batch", min=1)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_shapes={INPUT_NAME: {0: batch}},
                opset_version=opset,
                dynamo=True,
                optimize=False,
                external_data=external,
                verbose=False,
            )
        info["exporter"] = "dynamo"
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types; the fallback reports them
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        logger.warning("%s: the dynamo ONNX exporter failed (%s); trying the TorchScript exporter", what, reason)
        _remove_outputs(path)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (example,),
                    str(path),
                    input_names=[INPUT_NAME],
                    output_names=output_names,
                    opset_version=opset or 17,
                    dynamo=False,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in output_names}},
                )
        except Exception as exc2:
            raise ExportError(
                f"{what}: ONNX export failed with the dynamo exporter ({reason}) and the "
                f"TorchScript exporter ({type(exc2).__name__}: {exc2})"
            ) from exc2
        info.update(exporter="torchscript", fallback_reason=reason)
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    info["opset"] = int(next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0))
    info["ir_version"] = int(proto.ir_version)
    return info


def _remove_outputs(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def check_onnx(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    size: int,
    channels: int,
    output_names: list[str],
    what: str,
    parts: dict[str, list[str]] | None = None,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> float:
    """Max ``|onnxruntime - PyTorch eager|`` over all outputs on random ``uint8`` batches.

    Two batch sizes (1 and 5, neither the traced 2) also prove the batch dimension is
    symbolic. ``parts`` maps an output name to labels of its axis 1 (the members of
    ``member_probs``), so a disagreement names the member that causes it.

    Raises:
        ExportError: the difference exceeds ``tolerance`` (the message names ``what``, the
            output and, with ``parts``, the member).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    module = module.eval()
    for n in (1, 5):
        images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
        with torch.no_grad():
            ref = module(torch.from_numpy(images))
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = session.run(output_names, {INPUT_NAME: images})
        diffs: dict[str, np.ndarray] = {}
        for name, r, g in zip(output_names, ref, got):
            r = r.float().numpy()
            if g.shape != r.shape:
                raise ExportError(f"{what}: ONNX output {name!r} has shape {g.shape}, PyTorch {r.shape} (batch of {n})")
            if not np.all(np.isfinite(g)):
                raise ExportError(f"{what}: ONNX output {name!r} is not finite on a batch of {n}")
            diffs[name] = np.abs(g.astype(np.float64) - r.astype(np.float64))
        errs = {name: float(d.max()) if d.size else 0.0 for name, d in diffs.items()}
        name = max(errs, key=errs.get)
        if errs[name] > tolerance:
            culprit = ""
            for part, labels in (parts or {}).items():
                d = diffs.get(part)
                if d is not None and d.ndim == 3 and d.size:
                    per = d.max(axis=(0, 2))
                    if per.max() > tolerance:
                        culprit = f"; member {labels[int(per.argmax())]!r} differs by {float(per.max()):.3g}"
            raise ExportError(
                f"{what}: ONNX output {name!r} differs from PyTorch by {errs[name]:.3g} > {tolerance:g}{culprit}"
            )
        worst = max(worst, errs[name])
    return worst
