"""Point a graph's initializers at the bundle's weights files, so each weight is stored once.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header (each
tensor's dtype, shape and ``data_offsets``) and the tensors' raw little-endian bytes. ONNX
external data names a file relative to the graph, an ``offset`` and a ``length``; so an
initializer whose bytes equal a tensor of a weights file beside the graph can read that
tensor's bytes straight from the file (onnxruntime and ``onnx.load`` resolve the location
against the graph's folder, so the bundle stays a folder that can be copied anywhere).

Tensors are matched by their bytes (a hash), not their names: the exporter names
initializers after module paths (``members.0.folds.1.backbone...``), and the bytes are
what matters. A float16 weights file (the retention policy's ``half_precision_weights``)
matches a float32 initializer when the initializer is the file's tensor upcast (what the
loaders build): the graph then holds a float16 initializer read from the file and a
``Cast`` to float32 (exact; onnxruntime folds it when it loads the graph). Initializers
with no match (the preprocessing constants, a combiner's weights, anything the exporter
computed) stay in the graph file: a few kilobytes.

The metadata ``torch.onnx`` records on nodes, values and initializers (stack traces with
the exporting machine's paths, module names) is dropped: it is for debugging an export, not for running a bundle, and it
is about as large as a small model's weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["EMBED_LIMIT", "TensorRef", "link_initializers", "safetensors_index"]

#: Largest graph file written whole; protobuf refuses messages over 2 GiB (room left for the graph itself).
EMBED_LIMIT = int(1.8 * 2**30)

# safetensors dtype -> numpy dtype of the bytes the file stores (little-endian).
_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes lie: ``file`` (relative to the bundle), ``offset``, ``length``, stored ``dtype``."""

    file: str
    offset: int
    length: int
    dtype: str


def _header(path: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset of its first tensor byte."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def _key(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def safetensors_index(root: str | os.PathLike, files: list[Path]) -> dict[bytes, TensorRef]:
    """Every float tensor of ``files`` by the sha256 of its float32 bytes (float16 tensors: upcast)."""
    root = Path(root)
    index: dict[bytes, TensorRef] = {}
    for path in files:
        header, start = _header(path)
        rel = Path(path).relative_to(root).as_posix()
        with open(path, "rb") as f:
            for name, entry in header.items():
                dtype = _DTYPES.get(entry.get("dtype")) if name != "__metadata__" else None
                if dtype is None:
                    continue
                lo, hi = entry["data_offsets"]
                if hi <= lo:
                    continue
                f.seek(start + lo)
                data = f.read(hi - lo)
                if entry["dtype"] == "F16":
                    data = np.frombuffer(data, dtype).astype("<f4").tobytes()
                index.setdefault(_key(data), TensorRef(rel, start + lo, hi - lo, entry["dtype"]))
    return index


def _point(tensor, ref: TensorRef) -> None:
    from onnx import TensorProto

    for field in ("raw_data", "float_data", "int32_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    for key, value in (("location", ref.file), ("offset", str(ref.offset)), ("length", str(ref.length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = TensorProto.EXTERNAL


def link_initializers(graph_path: str | os.PathLike, root: str | os.PathLike, files: list[Path]) -> dict:
    """Rewrite the ONNX file ``graph_path`` to read matching initializers from ``files``.

    ``files`` are safetensors files inside the bundle folder ``root`` (the graph's folder or
    below it). A side ``<graph>.data`` file the exporter wrote is read and removed: its
    tensors are either found in ``files`` or embedded again.

    Returns ``{"files": [the weights files the graph reads], "linked_bytes": n,
    "embedded_bytes": n, "float16_bytes": n}`` (``float16_bytes``: read as float16 and cast).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph_path, root = Path(graph_path), Path(root)
    side = graph_path.with_name(graph_path.name + ".data")
    proto = onnx.load(str(graph_path), load_external_data=side.exists())
    index = safetensors_index(root, files)
    used: set[str] = set()
    linked = embedded = half = 0
    casts = []
    for tensor in list(proto.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if tensor.data_type != TensorProto.FLOAT:
            embedded += values.nbytes
            continue
        values = values.astype("<f4", copy=False)
        ref = index.get(_key(values.tobytes())) if values.size else None
        if ref is None:
            embedded += values.nbytes
            continue
        used.add(ref.file)
        if ref.dtype == "F32":
            _point(tensor, ref)
            linked += ref.length
            continue
        stored = TensorProto(name=f"{tensor.name}.float16", data_type=TensorProto.FLOAT16, dims=tensor.dims)
        _point(stored, ref)
        proto.graph.initializer.remove(tensor)
        proto.graph.initializer.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [tensor.name], to=TensorProto.FLOAT))
        half += ref.length
    for i, node in enumerate(casts):
        proto.graph.node.insert(i, node)
    graph = proto.graph
    for item in (*graph.node, *graph.value_info, *graph.initializer, *graph.input, *graph.output):
        del item.metadata_props[:]
        item.doc_string = ""
    if side.exists():
        side.unlink()
    if proto.ByteSize() > EMBED_LIMIT:  # protobuf's 2 GiB cap: what is not in a weights file goes beside the graph
        onnx.save_model(proto, str(graph_path), save_as_external_data=True, location=side.name, size_threshold=1024)
        used.add(side.relative_to(root).as_posix())
    else:
        graph_path.write_bytes(proto.SerializeToString())
    return {"files": sorted(used), "linked_bytes": linked, "embedded_bytes": embedded, "float16_bytes": half}
