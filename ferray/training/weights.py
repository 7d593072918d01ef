"""Model weights as safetensors: what a finished trial keeps for the later stages.

After its last epoch every fold worker writes the weights that made its out-of-fold and
holdout predictions (the EMA weights when EMA was evaluated) to
``<trial>/weights/fold_<i>.safetensors``, with the model's shape in the file's metadata.
Loading them executes nothing (safetensors holds tensors and strings only), so a run
folder from someone else is safe to ensemble and export.

>>> models = load_fold_models("runs/exp1/3f2a_00001")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ferray._io import atomic_write
from ferray.errors import DataError
from ferray.run.layout import TrialLayout
from ferray.run.weights import WeightsMeta
from ferray.training.models import build_model

__all__ = ["save_weights", "load_weights", "read_weights_meta", "load_fold_models", "WEIGHTS_FORMAT"]

WEIGHTS_FORMAT = "1"


def save_weights(
    model: torch.nn.Module, path: str | os.PathLike, meta: dict, *, dtype: torch.dtype | None = None
) -> None:
    """Write ``model``'s state dict to ``path`` (atomically) with JSON-able ``meta``."""
    from safetensors.torch import save

    tensors = {}
    for key, value in model.state_dict().items():
        t = value.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.contiguous().clone()  # clone: safetensors refuses shared storage
    header = {"format": WEIGHTS_FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
    atomic_write(path, save(tensors, metadata=header))


def read_weights_meta(path: str | os.PathLike) -> dict:
    """The metadata a :func:`save_weights` file carries (values decoded from JSON)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise DataError(f"{path}: not a readable safetensors weights file ({exc})") from None
    if raw.get("format") != WEIGHTS_FORMAT:
        raise DataError(f"{path}: weights format {raw.get('format')!r}; this ferray reads format {WEIGHTS_FORMAT}")
    return {k: json.loads(v) for k, v in raw.items() if k != "format"}


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable safetensors weights file ({exc})") from None


def load_fold_models(trial: str | os.PathLike | TrialLayout, *, device: str = "cpu") -> list[torch.nn.Module]:
    """The k fold models of a finished trial, in eval mode, built from its weights files.

    Raises:
        DataError: the trial has no weights (it did not finish, or they were pruned away).
    """

    layout = trial if isinstance(trial, TrialLayout) else TrialLayout(Path(trial))
    files = (
        sorted(layout.weights_dir.glob("fold_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
        if layout.weights_dir.is_dir()
        else []
    )
    if not files:
        raise DataError(
            f"{layout.root}: no model weights ({layout.weights_dir}/fold_*.safetensors); "
            "only trials that finished keep them, and the retention policy keeps them for the best "
            "completed trials only (the spec's retention.keep_top; see its retention.json)"
        )
    models = []
    for path in files:
        meta = WeightsMeta.from_dict(read_weights_meta(path), source=path)
        cfg = meta.train_config()
        model_cfg = cfg.model.model_copy(update={"pretrained": False})
        model = build_model(model_cfg, num_classes=meta.num_classes, in_chans=meta.in_chans, img_size=meta.img_size)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(path).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise DataError(
                f"{path}: weights do not fit {cfg.model.backbone} (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        models.append(model.to(device).eval())
    return models
