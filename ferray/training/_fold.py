"""Training of one fold model, independent of Ray.

:class:`FoldTrainer` owns one fold's model, optimiser, schedule, AMP scaler and EMA, and
trains it epoch by epoch on that fold's training rows. The Ray Train worker
(:mod:`ferray.training._worker`) runs one of these per fold; benchmarks and tests use it
directly. Each epoch's randomness (batch order, augmentation, mixup) is derived from
``(seed, fold, epoch)``, so an epoch replayed after a restore draws the same batches.

Training batches come from one of two data paths (``run.data_path``, see
:mod:`ferray.training.resident`): the fold's images resident on its device, augmented a
batch at a time there, or a DataLoader augmenting image by image with albumentations. Both
draw the same rows in the same order for an epoch; evaluation is the same for both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

from ferray.data import FERData
from ferray.errors import ConfigError
from ferray.metrics import accuracy, au_f1, macro_f1
from ferray.training._step import NonFiniteLossError, TrainStep
from ferray.training.augment import build_eval_transform, build_train_transform
from ferray.training.batch_augment import BatchAugment
from ferray.training.config import TrainConfig
from ferray.training.ema import ModelEma
from ferray.training.losses import build_loss
from ferray.training.mixing import MixupCutmix
from ferray.training.models import build_model
from ferray.training.resident import BUDGET_FRACTION, choose_data_path, free_bytes, resident_images
from ferray.training.schedules import build_optimizer, build_scheduler
from ferray.training.tta import predict_proba

__all__ = ["FoldTrainer", "NonFiniteLossError", "EpochStats", "targets_of"]


@dataclass
class EpochStats:
    train_loss: float
    images: int
    seconds: float
    lr: float
    finite: bool = True


def targets_of(data: FERData, use_soft: bool) -> np.ndarray:
    """``float32 (N, C)`` training targets: the soft labels when asked and present, else one-hot."""
    if use_soft and data.soft_labels is not None:
        return np.ascontiguousarray(data.soft_labels, dtype=np.float32)
    eye = np.eye(data.num_classes, dtype=np.float32)
    return eye[data.labels]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class _Rows(Dataset):
    """Selected rows of a FERData, transformed on access."""

    def __init__(
        self, images: np.ndarray, targets: np.ndarray, aus: np.ndarray | None, index: np.ndarray, transform
    ) -> None:
        self.images, self.targets, self.aus = images, targets, aus
        self.index = index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        row = self.index[i]
        x = torch.from_numpy(self.transform(self.images[row]))
        y = torch.from_numpy(self.targets[row])
        if self.aus is None:
            return x, y
        return x, y, torch.from_numpy(self.aus[row].astype(np.float32))


class FoldTrainer:
    """Trains fold ``fold`` of ``data`` on ``train_index`` and validates on ``val_index``.

    Args:
        cfg: the training configuration.
        data: the whole dataset (images are only read, never copied wholesale).
        train_index, val_index: rows of ``data`` this fold trains and validates on.
        fold: fold number (mixes into the seeds).
        device: torch device; ``None`` picks CUDA when available.
        name: what errors call this trainer (default ``"fold <fold>"``).
        data_budget: bytes the resident training images may take for ``run.data_path: auto``;
            ``None`` means a share of the device's free memory
            (:data:`~ferray.training.resident.BUDGET_FRACTION`).

    Attributes:
        data_path: ``"device"`` or ``"loader"``, the data path this trainer trains from.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: FERData,
        train_index: np.ndarray,
        val_index: np.ndarray,
        *,
        fold: int = 0,
        device: torch.device | str | None = None,
        name: str | None = None,
        data_budget: int | None = None,
    ):
        self.cfg, self.data, self.fold = cfg, data, fold
        self.train_index = np.asarray(train_index)
        self.val_index = np.asarray(val_index)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.size = cfg.data.size or data.image_shape[0]
        self.channels = data.image_shape[2]
        self.epoch = 0
        #: When this trainer's first training step ended (``time.time()``) and the process's CPU
        #: seconds then (``time.process_time()``): the end of a fold worker's start-up.
        self.first_step_at: float | None = None
        self.first_step_cpu_s: float | None = None

        self.predicts_aus = cfg.model.head != "emotion"
        if self.predicts_aus and data.aus is None:
            raise ConfigError(
                f"model.head: '{cfg.model.head}' needs action-unit labels but the data "
                f"({data.origin or 'given'}) has none; use head 'emotion' or a source with AUs"
            )
        self.targets = targets_of(data, cfg.loss.soft_labels)
        train_labels = data.labels[self.train_index]
        self.class_counts = np.bincount(train_labels, minlength=data.num_classes)
        au_rate = None
        if self.predicts_aus:
            au_rate = data.aus[self.train_index].mean(axis=0)

        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(_seed(cfg.run.seed, fold, 0xF01D))
            self.model = build_model(
                cfg.model, num_classes=data.num_classes, in_chans=self.channels, img_size=self.size
            ).to(self.device)
        if cfg.run.channels_last and self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(
            cfg.loss,
            num_classes=data.num_classes,
            class_counts=self.class_counts,
            au_pos_rate=au_rate,
            au_weight=cfg.model.au_weight,
        ).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(self.optimizer, cfg.optim.schedule, self.steps_per_epoch, cfg.run.epochs)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEma(self.model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
        self.train_step = TrainStep(
            self.model,
            self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            ema=self.ema,
            grad_clip=cfg.optim.grad_clip,
            amp_dtype=self.amp_dtype,
            device_type=self.device.type,
            name=f"fold {fold}" if name is None else name,
        )
        self.eval_transform = build_eval_transform(self.size, self.channels)
        self.data_path = self._choose_data_path(data_budget)
        self._images: torch.Tensor | None = None
        if self.data_path == "device":
            self._images = torch.from_numpy(
                resident_images(data.images, self.train_index, self.size, self.channels)
            ).to(self.device)
            self.batch_augment = BatchAugment(self.size, self.channels, cfg.augment.strength)

    # -- set-up helpers -----------------------------------------------------------------
    def _steps_per_epoch(self) -> int:
        n = len(self.train_index)
        bs = self.cfg.run.batch_size
        steps = n // bs if n >= bs else 1
        if self.cfg.run.max_steps_per_epoch:
            steps = min(steps, self.cfg.run.max_steps_per_epoch)
        return max(1, steps)

    def _amp_dtype(self) -> torch.dtype | None:
        mode = self.cfg.run.amp
        if mode == "off" or self.device.type != "cuda":
            return None if mode in ("off", "auto") else (torch.bfloat16 if mode == "bf16" else None)
        if mode == "fp16":
            return torch.float16
        if mode == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _choose_data_path(self, budget: int | None) -> str:
        nbytes = len(self.train_index) * self.size * self.size * self.channels
        mode = self.cfg.run.data_path
        if budget is None and mode == "auto":
            budget = int(BUDGET_FRACTION * free_bytes(self.device))
        return choose_data_path(mode, self.device, nbytes, budget or 0, self.cfg.run.loader_workers)

    def _autocast(self):
        return self.train_step.autocast()

    def _sampler(self, epoch: int) -> Sampler[int]:
        """The rows (positions in ``train_index``) of ``epoch``, in order; they depend only on (seed, fold, epoch)."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(_seed(cfg.run.seed, self.fold, epoch))
        n_samples = self.steps_per_epoch * cfg.run.batch_size
        if cfg.loss.balanced_sampling:
            weights = 1.0 / np.maximum(self.class_counts, 1)
            return WeightedRandomSampler(
                torch.as_tensor(weights[self.data.labels[self.train_index]], dtype=torch.double),
                num_samples=n_samples,
                replacement=True,
                generator=gen,
            )
        n = len(self.train_index)
        return RandomSampler(range(n), replacement=n < n_samples, num_samples=n_samples, generator=gen)

    def train_loader(self, epoch: int) -> DataLoader:
        """The loader of ``epoch``: batch order and augmentation depend only on (seed, fold, epoch)."""
        cfg = self.cfg
        seed = _seed(cfg.run.seed, self.fold, epoch)
        transform = build_train_transform(self.size, self.channels, cfg.augment.strength, seed=seed)
        rows = _Rows(
            self.data.images, self.targets, self.data.aus if self.predicts_aus else None, self.train_index, transform
        )
        return DataLoader(
            rows,
            batch_size=cfg.run.batch_size,
            sampler=self._sampler(epoch),
            num_workers=cfg.run.loader_workers,
            pin_memory=self.device.type == "cuda",
        )

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """``(x, y, aus)`` batches of ``epoch`` on the trainer's device, from :attr:`data_path`."""
        if self._images is None:
            non_blocking = self.device.type == "cuda"
            for batch in self.train_loader(epoch):
                x = batch[0].to(self.device, non_blocking=non_blocking)
                y = batch[1].to(self.device, non_blocking=non_blocking)
                aus = batch[2].to(self.device, non_blocking=non_blocking) if len(batch) > 2 else None
                yield x, y, aus
            return
        # Targets are read each epoch: a subclass (the distillation student) may replace them.
        targets = torch.from_numpy(np.ascontiguousarray(self.targets[self.train_index])).to(self.device)
        aus = None
        if self.predicts_aus:
            aus = torch.from_numpy(self.data.aus[self.train_index].astype(np.float32)).to(self.device)
        order = torch.as_tensor(list(self._sampler(epoch)), dtype=torch.long).to(self.device)
        gen = torch.Generator(self.device).manual_seed(_seed(self.cfg.run.seed, self.fold, epoch, 11))
        for rows in order.split(self.cfg.run.batch_size):
            x = self.batch_augment(self._images.index_select(0, rows), gen)
            yield x, targets.index_select(0, rows), (aus.index_select(0, rows) if aus is not None else None)

    # -- training -----------------------------------------------------------------------
    def train_epoch(self, epoch: int | None = None) -> EpochStats:
        """Train one epoch; raises :class:`NonFiniteLossError` if the loss stops being finite."""
        epoch = self.epoch if epoch is None else epoch
        cfg = self.cfg
        self.model.train()
        mixer = None
        if cfg.augment.mixup_alpha > 0 or cfg.augment.cutmix_alpha > 0:
            mixer = MixupCutmix(
                self.data.num_classes,
                mixup_alpha=cfg.augment.mixup_alpha,
                cutmix_alpha=cfg.augment.cutmix_alpha,
                prob=cfg.augment.mix_prob,
                warmup_epochs=cfg.augment.mix_warmup_epochs,
                generator=torch.Generator().manual_seed(_seed(cfg.run.seed, self.fold, epoch, 7)),
            )
        start = time.perf_counter()
        total, seen, steps = 0.0, 0, 0
        for x, y, aus in self.train_batches(epoch):
            if cfg.run.channels_last and self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            x, y, aus = self._mix_batch(x, y, aus, mixer, epoch)
            loss = self.train_step(partial(self._loss, x, y, aus), at=f"epoch {epoch + 1}, step {steps + 1}")
            total += loss.item() * len(x)
            seen += len(x)
            steps += 1
            if self.first_step_at is None:
                self.first_step_at, self.first_step_cpu_s = time.time(), time.process_time()
        self.epoch = epoch + 1
        return EpochStats(
            train_loss=total / max(seen, 1),
            images=seen,
            seconds=time.perf_counter() - start,
            lr=float(self.optimizer.param_groups[0]["lr"]),
        )

    def _mix_batch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        aus: torch.Tensor | None,
        mixer: MixupCutmix | None,
        epoch: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch the model trains on: inputs, loss targets and AU labels, mixed when mixing is on."""
        if mixer is None:
            return x, y, aus
        return mixer(x, y, aus, epoch=epoch)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, aus: torch.Tensor | None) -> torch.Tensor:
        """The training loss of one batch (forward pass included)."""
        out = self.model(x)
        loss, _ = self.loss_fn(out, y, aus)
        return loss

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model evaluated: the EMA weights when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def predict(self, index: np.ndarray, tta: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Class (and AU) probabilities for rows ``index``; ``tta`` views are averaged."""
        bs = self.cfg.run.eval_batch_size or max(self.cfg.run.batch_size, 128)
        with self._autocast():
            probs, au_probs = predict_proba(
                self.eval_model,
                self.data.images[index],
                self.eval_transform,
                tta=tta or [],
                batch_size=bs,
                device=self.device,
            )
        return probs.astype(np.float32), (au_probs.astype(np.float32) if au_probs is not None else None)

    def evaluate(self, index: np.ndarray | None = None, tta: list[str] | None = None) -> dict:
        """Validation metrics (loss, accuracy, macro-F1, AU F1) on ``index`` (default: this fold's val rows)."""
        index = self.val_index if index is None else np.asarray(index)
        probs, au_probs = self.predict(index, tta)
        return self.metrics_of(index, probs, au_probs)

    def metrics_of(self, index: np.ndarray, probs: np.ndarray, au_probs: np.ndarray | None) -> dict:
        labels = self.data.labels[index]
        target = self.targets[index]
        loss = float(-(target * np.log(np.clip(probs, 1e-7, 1.0))).sum(axis=1).mean())
        out = {
            "loss": loss,
            "accuracy": accuracy(labels, probs),
            "macro_f1": macro_f1(labels, probs, num_classes=self.data.num_classes),
        }
        if au_probs is not None and self.data.aus is not None:
            out["au_f1"] = au_f1(self.data.aus[index], au_probs)[0]
        return out

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        # RNG states are CPU byte tensors, whatever device the checkpoint was mapped to.
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.epoch = int(state["epoch"])


def fold_stats(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of per-fold values, NaN-safe."""
    arr = np.asarray(values, dtype=np.float64)
    if not len(arr) or not np.all(np.isfinite(arr)):
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())
