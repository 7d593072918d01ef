"""A fold's resumable training state on disk (``checkpoints/epoch_NNNN/fold_<i>.pt``).

The state holds tensors and plain Python values only (model, optimizer, scheduler, scaler
and EMA state dicts, RNG states as tensors, the report history), so it is read with
``torch.load(weights_only=True)``: a checkpoint from someone else's run folder cannot run
code through ferray. Anything else in the file is refused with the file named.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from ferray._io import atomic_write
from ferray.errors import DataError

__all__ = ["save_fold_state", "load_fold_state", "load_fold_history"]


def save_fold_state(state: dict, path: str | os.PathLike, *, durable: bool = True) -> None:
    """Write ``state`` to ``path`` atomically (temporary name, fsync, rename).

    ``durable=False`` skips the fsyncs (still a temporary name and a rename, so a torn file never
    carries the final name): for an epoch checkpoint, which Ray Train registers only once every
    worker's file is whole, and whose bytes Ray's own copy to storage never syncs either; the
    fsync bought nothing but time on the training's critical path.
    """
    if not durable:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(state, str(tmp))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return

    atomic_write(path, lambda stream: torch.save(state, stream))


def load_fold_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a fold state written by :func:`save_fold_state`, never executing code from it.

    Raises:
        DataError: the file is missing, truncated, or holds anything but tensors and plain values.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: not a ferray checkpoint that can be loaded safely (tensors and plain values only): {first}"
        ) from None


def load_fold_history(path: str | os.PathLike) -> list[dict]:
    """The per-epoch reports a fold state holds, without reading its tensors (memory-mapped).

    Raises:
        DataError: as :func:`load_fold_state`.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a ferray checkpoint that can be loaded safely: {first}") from None
    history = state.get("history") if isinstance(state, dict) else None
    return [dict(h) for h in history] if isinstance(history, list) else []
