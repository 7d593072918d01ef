"""Training building blocks: models, losses, augmentation (per image and per batch), mixup, schedules, EMA, TTA.

Scores (accuracy, macro-F1, bootstrap intervals) live in :mod:`ferray.metrics`.

>>> from ferray.training import FocalLoss, mixup, build_model, BACKBONE_FAMILIES
"""

# Exports load on first use: ``import ferray.training.config`` (spec validation, the CLI)
# must not pay for torch, timm and albumentations.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "ImageTransform": "ferray.training.augment",
    "apply_batch": "ferray.training.augment",
    "build_eval_transform": "ferray.training.augment",
    "build_train_transform": "ferray.training.augment",
    "BatchAugment": "ferray.training.batch_augment",
    "COST_KEYS": "ferray.training.cost",
    "count_macs": "ferray.training.cost",
    "count_params": "ferray.training.cost",
    "measure_cost": "ferray.training.cost",
    "measure_latency": "ferray.training.cost",
    "ModelEma": "ferray.training.ema",
    "LOSSES": "ferray.training.losses",
    "AULoss": "ferray.training.losses",
    "FERLoss": "ferray.training.losses",
    "FocalLoss": "ferray.training.losses",
    "SoftCrossEntropy": "ferray.training.losses",
    "build_loss": "ferray.training.losses",
    "register_loss": "ferray.training.losses",
    "soft_cross_entropy": "ferray.training.losses",
    "MixupCutmix": "ferray.training.mixing",
    "cutmix": "ferray.training.mixing",
    "mixup": "ferray.training.mixing",
    "BACKBONE_FAMILIES": "ferray.training.models",
    "HEADS": "ferray.training.models",
    "NUM_AUS": "ferray.training.models",
    "FERModel": "ferray.training.models",
    "LoadReport": "ferray.training.models",
    "build_model": "ferray.training.models",
    "check_backbone": "ferray.training.models",
    "load_pretrained": "ferray.training.models",
    "param_groups": "ferray.training.models",
    "SCHEDULES": "ferray.training.schedules",
    "build_optimizer": "ferray.training.schedules",
    "build_scheduler": "ferray.training.schedules",
    "register_schedule": "ferray.training.schedules",
    "TTA_VIEWS": "ferray.training.tta",
    "predict_proba": "ferray.training.tta",
    "TrainingFailed": "ferray.training._kfold",
    "TrainResult": "ferray.training._kfold",
    "train": "ferray.training._kfold",
    "build_trainer": "ferray.training._kfold",
    "failure_reason": "ferray.training._kfold",
    "load_data": "ferray.training._kfold",
    "make_fold_plan": "ferray.training._kfold",
    "save_weights": "ferray.training.weights",
    "StallLimits": "ferray.training.watch",
    "TrainingStalled": "ferray.training.watch",
    "load_fold_models": "ferray.training.weights",
    "read_weights_meta": "ferray.training.weights",
    "TrainConfig": "ferray.training.config",
    "load_train_config": "ferray.training.config",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.training._kfold import (
        TrainingFailed,
        TrainResult,
        build_trainer,
        failure_reason,
        load_data,
        make_fold_plan,
        train,
    )
    from ferray.training.augment import ImageTransform, apply_batch, build_eval_transform, build_train_transform
    from ferray.training.batch_augment import BatchAugment
    from ferray.training.config import TrainConfig, load_train_config
    from ferray.training.cost import COST_KEYS, count_macs, count_params, measure_cost, measure_latency
    from ferray.training.ema import ModelEma
    from ferray.training.losses import (
        LOSSES,
        AULoss,
        FERLoss,
        FocalLoss,
        SoftCrossEntropy,
        build_loss,
        register_loss,
        soft_cross_entropy,
    )
    from ferray.training.mixing import MixupCutmix, cutmix, mixup
    from ferray.training.models import (
        BACKBONE_FAMILIES,
        HEADS,
        NUM_AUS,
        FERModel,
        LoadReport,
        build_model,
        check_backbone,
        load_pretrained,
        param_groups,
    )
    from ferray.training.schedules import SCHEDULES, build_optimizer, build_scheduler, register_schedule
    from ferray.training.tta import TTA_VIEWS, predict_proba
    from ferray.training.watch import StallLimits, TrainingStalled
    from ferray.training.weights import load_fold_models, read_weights_meta, save_weights
