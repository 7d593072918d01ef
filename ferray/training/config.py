"""The typed configuration of one training run (one trial of a search).

A YAML file passed to ``ferray train`` has the sections below; every key is optional
except where noted, and unknown keys are errors naming their full path.

>>> from ferray.training.config import TrainConfig
>>> cfg = TrainConfig.model_validate({"model": {"backbone": "resnet18"}})
>>> cfg.loss.name, cfg.folds.k
('ce', 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ferray._config import StrictModel, load_yaml, validate_model
from ferray.runtime.planner import gpu_share_problem

__all__ = [
    "DataConfig",
    "FoldConfig",
    "ModelConfig",
    "LossConfig",
    "AugmentConfig",
    "OptimConfig",
    "ScheduleConfig",
    "RunConfig",
    "ResourceConfig",
    "TrainConfig",
    "load_train_config",
]


class DataConfig(StrictModel):
    """Which data to train on, at which size."""

    source: str = Field(
        "synthetic:basic7",
        description="A data source: a prepared .parquet, a dataset path, or 'synthetic:...'.",
    )
    size: int | None = Field(None, ge=16, le=512, description="Square image side; None keeps the source's.")
    channels: Literal[1, 3] | None = Field(None, description="1 (grayscale) or 3 (RGB); None keeps the source's.")


class FoldConfig(StrictModel):
    """The k-fold plan (see :func:`ferray.data.plan_folds`)."""

    k: int = Field(3, ge=2, le=20)
    seed: int = 0
    holdout: str | float = "auto"
    group_by_subject: bool = True
    group_duplicates: bool = Field(
        True,
        description="Keep exact and near-duplicate images (perceptual hash) in one fold, "
        "out of a fractional holdout's folds.",
    )


class ModelConfig(StrictModel):
    """Backbone and head."""

    backbone: str = Field("resnet18", description="Any timm model name.")
    pretrained: bool | str = Field(
        False, description="false, a local weights file, or true / a hub tag fetched only with network."
    )
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    head: Literal["emotion", "multitask", "au_attention"] = Field(
        "emotion",
        description="emotion only; emotion + AU (sigmoid) heads; or AU predictions re-weighting "
        "the features that feed the emotion head.",
    )
    au_weight: float = Field(1.0, ge=0.0, description="Weight of the AU loss in multi-task heads.")
    backbone_kwargs: dict = Field(default_factory=dict, description="Extra keyword arguments for timm.create_model.")


class LossConfig(StrictModel):
    """Emotion loss (the AU loss is BCE with positive weighting when the head predicts AUs)."""

    name: str = Field(
        "ce",
        description="A registered loss: ce, label_smoothing, focal, soft_ce, or one "
        "added with ferray.training.register_loss.",
    )
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="Used by 'label_smoothing'.")
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0, description="Used by 'focal'.")
    focal_alpha: Literal["none", "balanced"] = Field(
        "balanced", description="Per-class alpha from inverse class frequency, or none."
    )
    au_pos_weight: bool = Field(True, description="Weight AU positives by negatives/positives.")
    soft_labels: bool = Field(True, description="Train on the data's soft labels (FER+ votes) when present.")
    balanced_sampling: bool = Field(False, description="Sample training batches class-balanced.")

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from ferray.training.registry import LOSS_REGISTRY

        return LOSS_REGISTRY.check(v)


class AugmentConfig(StrictModel):
    """Training augmentation (albumentations), mixup/cutmix and test-time augmentation."""

    strength: float = Field(0.5, ge=0.0, le=1.0, description="0 = none, 1 = strongest.")
    mixup_alpha: float = Field(0.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="Probability a batch is mixed when an alpha > 0.")
    mix_warmup_epochs: int = Field(0, ge=0, description="Epochs before mixing reaches mix_prob.")
    tta: list[Literal["hflip", "multicrop"]] = Field(default_factory=lambda: ["hflip"])


class ScheduleConfig(StrictModel):
    name: str = Field(
        "cosine",
        description="A registered schedule: cosine, onecycle, poly, step, constant, "
        "or one added with ferray.training.register_schedule.",
    )
    warmup_epochs: float = Field(0.0, ge=0.0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    power: float = Field(1.0, gt=0.0, description="Used by 'poly'.")
    step_epochs: int = Field(10, ge=1, description="Used by 'step'.")
    step_gamma: float = Field(0.1, gt=0.0, le=1.0, description="Used by 'step'.")

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from ferray.training.registry import SCHEDULE_REGISTRY

        return SCHEDULE_REGISTRY.check(v)


class OptimConfig(StrictModel):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.05, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Used by 'sgd'.")
    nesterov: bool = True
    grad_clip: float | None = Field(None, gt=0.0, description="Max global gradient norm.")
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0, description="Keep an EMA of weights and evaluate it.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


class RunConfig(StrictModel):
    """Epochs, batches, evaluation and devices."""

    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    eval_batch_size: int | None = Field(None, ge=1)
    metric: Literal["accuracy", "macro_f1", "loss"] = Field(
        "accuracy", description="Fold-mean validation metric reported as 'metric'."
    )
    early_stopping_patience: int | None = Field(None, ge=1, description="Epochs without fold-mean improvement.")
    seed: int = 0
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    loader_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes per fold.")
    data_path: Literal["auto", "device", "loader"] = Field(
        "auto",
        description="device: a fold's training images stay on its device and batches are augmented there; "
        "loader: a DataLoader augments image by image (albumentations); auto: device when the images fit "
        "a tenth of the device's free memory (on the CPU only with loader_workers 0), else loader.",
    )
    max_steps_per_epoch: int | None = Field(None, ge=1, description="Cap steps per epoch (smoke runs).")


class ResourceConfig(StrictModel):
    """What each fold worker asks Ray for."""

    cpus_per_worker: float | None = Field(None, gt=0.0, description="None: share the machine's CPUs.")
    gpus_per_worker: float | Literal["auto"] = Field(
        0.0,
        description="0: CPU; a fraction of one GPU (0.5: two folds share it); whole GPUs; auto: the folds "
        "of a trial on as few GPUs as hold them, at most folds_per_gpu on one (0 without GPUs).",
    )
    folds_per_gpu: int = Field(4, ge=1, le=64, description="With gpus_per_worker: auto, most folds on one GPU.")
    placement: Literal["spread", "pack"] = Field(
        "spread", description="How a trial's fold workers are placed on the nodes (Ray Train placement_strategy)."
    )
    max_failures: int = Field(0, ge=-1, description="Worker-group restarts from the last checkpoint.")

    @field_validator("gpus_per_worker")
    @classmethod
    def _gpu_share(cls, value: float | str) -> float | str:
        problem = None if value == "auto" else gpu_share_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class TrainConfig(StrictModel):
    """Everything one trial needs: data, folds, model, loss, augmentation, optimisation."""

    data: DataConfig = Field(default_factory=DataConfig)
    folds: FoldConfig = Field(default_factory=FoldConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    resources: ResourceConfig = Field(default_factory=ResourceConfig)

    @field_validator("model")
    @classmethod
    def _pretrained_file(cls, model: ModelConfig) -> ModelConfig:
        p = model.pretrained
        if isinstance(p, str) and (os.sep in p or p.endswith((".pth", ".pt", ".bin", ".safetensors"))):
            if not Path(p).expanduser().is_file():
                raise ValueError(
                    f"pretrained weights file {p!r} does not exist; use false, an existing local "
                    "file, or a hub name (fetched only where the network is reachable)"
                )
        return model


def load_train_config(path: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """Load a training YAML file; ``overrides`` (nested dict) are merged on top before validation."""
    doc = load_yaml(path)
    data = dict(doc)
    if overrides:
        data = merge(data, overrides)
    return validate_model(TrainConfig, data, doc)


def merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge: ``extra`` wins, nested mappings are merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
