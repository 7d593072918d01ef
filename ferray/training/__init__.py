"""Training building blocks: models, losses, augmentation, mixup, schedules, EMA, metrics, TTA.

>>> from ferray.training import FocalLoss, mixup, build_model, BACKBONE_FAMILIES
"""

from ferray.training.augment import ImageTransform, apply_batch, build_eval_transform, build_train_transform
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
from ferray.training.metrics import accuracy, au_f1, log_loss, macro_f1, per_class_metrics
from ferray.training.mixup import MixupCutmix, cutmix, cutmix_box, mixup
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

__all__ = [
    # models
    "BACKBONE_FAMILIES",
    "HEADS",
    "NUM_AUS",
    "FERModel",
    "LoadReport",
    "build_model",
    "check_backbone",
    "load_pretrained",
    "param_groups",
    # losses
    "LOSSES",
    "AULoss",
    "FERLoss",
    "FocalLoss",
    "SoftCrossEntropy",
    "build_loss",
    "register_loss",
    "soft_cross_entropy",
    # augmentation and mixing
    "ImageTransform",
    "apply_batch",
    "build_eval_transform",
    "build_train_transform",
    "MixupCutmix",
    "cutmix",
    "cutmix_box",
    "mixup",
    # optimisation
    "SCHEDULES",
    "build_optimizer",
    "build_scheduler",
    "register_schedule",
    "ModelEma",
    # evaluation
    "accuracy",
    "au_f1",
    "log_loss",
    "macro_f1",
    "per_class_metrics",
    "TTA_VIEWS",
    "predict_proba",
]

from ferray.training._trial import TrainingFailed, TrainResult, train  # noqa: E402
from ferray.training.config import TrainConfig, load_train_config  # noqa: E402

__all__ += ["TrainConfig", "TrainResult", "TrainingFailed", "load_train_config", "train"]
