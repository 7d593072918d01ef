"""The metadata of a weights file: what model the tensors of ``fold_<i>.safetensors`` belong to.

Every fold worker writes one ``<trial>/weights/fold_<i>.safetensors`` when its trial ends, and
``ferray distill`` one for its student (``distill/weights/fold_0.safetensors``); the
safetensors header carries a :class:`WeightsMeta` (one JSON value per key, see
:func:`ferray.training.weights.save_weights`). Export, explain, distillation's teacher and
:func:`ferray.training.load_fold_models` read it to rebuild the model before loading its
tensors.

>>> meta = WeightsMeta(num_classes=7, in_chans=1, img_size=48, class_names=["angry", "disgust"])
>>> WeightsMeta.from_dict(meta.to_dict()) == meta
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ferray.errors import DataError
from ferray.training.config import TrainConfig

__all__ = ["WeightsMeta"]

#: Keys every weights file carries.
_REQUIRED = ("num_classes", "in_chans", "img_size", "class_names")


@dataclass
class WeightsMeta:
    """What a weights file's tensors are: the model's shape, its classes and how it was trained.

    Attributes:
        num_classes, in_chans, img_size: the model's output classes, input channels and side.
        class_names: the names of its outputs, in order.
        train: the trial's resolved training config (``TrainConfig`` as JSON).
        fold, k: which fold model of how many (a student: 0 of 1).
        ema: whether the weights are the EMA weights.
        normalise: the input normalisation, ``{"mean", "std"}`` of images scaled to [0, 1].
        data_fingerprint: the fingerprint of the data the model trained on.
        distill: a student's distillation settings (student, temperature, alpha, teacher, ensemble).
        precision: how the file stores the float tensors: ``"float16"`` after the retention
            policy converted it (``half_precision_weights``/``half_precision_candidates``; the
            loaders upcast to float32), None as trained (float32).
        extra: any other key of the file (keys a newer ferray wrote), kept so that a round trip
            loses nothing.

    Optional attributes that are ``None`` are left out of :meth:`to_dict`, so a file written
    without them reads and writes back the same keys.
    """

    num_classes: int
    in_chans: int
    img_size: int
    class_names: list[str]
    train: dict | None = None
    fold: int | None = None
    k: int | None = None
    ema: bool | None = None
    normalise: dict | None = None
    data_fingerprint: str | None = None
    distill: dict | None = None
    precision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    #: The order of the keys in the files (as the fold worker has always written them).
    _ORDER = (
        "train",
        "num_classes",
        "in_chans",
        "img_size",
        "class_names",
        "fold",
        "k",
        "ema",
        "normalise",
        "data_fingerprint",
        "distill",
        "precision",
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able mapping stored in the file's header (one key per attribute, then ``extra``)."""
        out: dict[str, Any] = {}
        for key in self._ORDER:
            value = getattr(self, key)
            if value is not None or key in _REQUIRED:
                out[key] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, source: object = "weights metadata") -> WeightsMeta:
        """The metadata of a decoded header (:func:`ferray.training.weights.read_weights_meta`).

        Raises:
            DataError: a key every weights file has is missing (``source`` names the file).
        """
        missing = [k for k in _REQUIRED if k not in doc]
        if missing:
            raise DataError(f"{source}: weights metadata lacks {', '.join(missing)}")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in doc.items() if k in names}
        known["num_classes"], known["in_chans"], known["img_size"] = (
            int(doc["num_classes"]),
            int(doc["in_chans"]),
            int(doc["img_size"]),
        )
        known["class_names"] = [str(c) for c in doc["class_names"]]
        return cls(**known, extra={k: v for k, v in doc.items() if k not in names})

    def train_config(self) -> TrainConfig:
        """The training config the model was built from.

        Raises:
            DataError: the file records no training config.
        """
        if self.train is None:
            raise DataError("weights metadata lacks 'train' (the training config the model was built from)")
        return TrainConfig.model_validate(self.train)
