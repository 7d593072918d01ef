"""The student's Ray Train worker: one worker trains on every cross-validation row.

:class:`StudentTrainer` is a :class:`~ferray.training._fold.FoldTrainer` (same model
building, data loader, albumentations pipeline, mixup/CutMix, optimiser, schedule, AMP, EMA
and TTA prediction) whose targets are packed ``[teacher_T | hard]`` rows and whose emotion
loss is :class:`~ferray.distill._loss.DistillationLoss`.

Two teachers:

* fixed (no ``teacher`` given): the packed teacher half is the ensemble's stored
  out-of-fold distribution; mixing applies the same pair and weight to both halves;
* online (an :class:`~ferray.distill._online.OnlineTeacher`): each row also carries its
  group (its fold, or transfer), partners are mixed within a group, and the teacher scores
  the very batch the student is about to see (augmented and mixed, eval mode, no gradient);
  its softened probabilities replace the packed teacher half.

The worker reports the training loss after the first epoch, then at most every
:data:`REPORT_EVERY_S` seconds (each ``ray.train.report`` blocks until Ray Train's controller
polls it, about 2 s: on small data that cost more than the epochs), and after the last, one
checkpoint holding the student's weights (``fold_0.safetensors``), its holdout probabilities
and the history of every epoch; the driver turns it into the ``distill/`` folder.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ferray.data import FERData
from ferray.distill._loss import DistillationLoss, soften
from ferray.metrics import accuracy, macro_f1
from ferray.runtime.compat import quiet_train_context_logger
from ferray.training._fold import FoldTrainer, NonFiniteLossError
from ferray.training.config import TrainConfig
from ferray.training.losses import FERLoss
from ferray.training.mixing import MixupCutmix
from ferray.training.weights import save_weights

__all__ = ["StudentTrainer", "student_worker", "CHECKPOINT_WEIGHTS", "CHECKPOINT_HOLDOUT", "CHECKPOINT_HISTORY"]

CHECKPOINT_WEIGHTS = "fold_0.safetensors"
CHECKPOINT_HOLDOUT = "holdout_probs.npy"
CHECKPOINT_HISTORY = "history.json"

#: Seconds between two progress reports after the first epoch's (the last epoch always reports).
REPORT_EVERY_S = 10.0


class StudentTrainer(FoldTrainer):
    """Trains a student on ``train_index`` rows against packed targets ``(N, 2C)``.

    Args:
        cfg: the student's training config.
        data: every row the student may read (cross-validation rows, holdout rows it only
            predicts, and any transfer images appended).
        train_index: rows it trains on.
        targets: ``float32 (len(data), 2C)``: ``[teacher at temperature T | hard one-hot]``;
            rows without a hard label (transfer images) have a zero hard half.
        alpha, temperature: the distillation loss's weights (see :mod:`ferray.distill._loss`).
        teacher: an online teacher (``teacher(x, groups) -> (B, C)`` probabilities), or None
            for the fixed targets; with one, the packed teacher half is ignored.
        groups: with ``teacher``: ``(len(data),)`` integers, the group of each row (its fold,
            or ``TRANSFER_GROUP``), which picks the teacher's model and keeps mixing inside it.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: FERData,
        train_index: np.ndarray,
        targets: np.ndarray,
        *,
        alpha: float,
        temperature: float,
        device: torch.device | str | None = None,
        teacher=None,
        groups: np.ndarray | None = None,
    ) -> None:
        super().__init__(cfg, data, train_index, np.zeros(0, np.int64), fold=0, device=device, name="student")
        c = data.num_classes
        targets = np.ascontiguousarray(targets, dtype=np.float32)
        if targets.shape != (len(data), 2 * c):
            raise ValueError(
                f"targets must be (len(data), 2 * num_classes) = {(len(data), 2 * c)}, got {targets.shape}"
            )
        self.teacher = teacher
        self.temperature = float(temperature)
        if teacher is not None:
            if groups is None or np.shape(groups) != (len(data),):
                raise ValueError(
                    f"an online teacher needs groups of shape (len(data),) = ({len(data)},), got "
                    f"{None if groups is None else np.shape(groups)}"
                )
            # The row's group rides along as one more target column (small integers: exact in float32).
            targets = np.concatenate([targets, np.asarray(groups, dtype=np.float32)[:, None]], axis=1)
        self.targets = targets  # read by FoldTrainer.train_loader
        self.loss_fn = FERLoss(
            DistillationLoss(alpha, temperature), self.loss_fn.au, au_weight=self.loss_fn.au_weight
        ).to(self.device)

    def _mix_batch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        aus: torch.Tensor | None,
        mixer: MixupCutmix | None,
        epoch: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch with packed ``[teacher | hard]`` targets: stored or scored by the online teacher, then mixed."""
        c = self.data.num_classes
        if self.teacher is None:
            teacher, hard = y[:, :c], y[:, c:]
            if mixer is not None:
                x, teacher, aus = mixer(x, teacher, aus, epoch=epoch)
                if mixer.last_perm is not None:  # the same partner and weight for the hard half
                    lam, perm = mixer.last_lam, mixer.last_perm.to(hard.device)
                    hard = hard * lam + hard[perm] * (1.0 - lam)
        else:
            hard, groups = y[:, c : 2 * c], y[:, 2 * c].round().long()
            if mixer is not None:
                x, hard, aus = mixer(x, hard, aus, epoch=epoch, groups=groups)
            with torch.no_grad(), self._autocast():  # the very batch the student sees next
                teacher = soften(self.teacher(x, groups).float(), self.temperature)
        return x, torch.cat([teacher, hard], dim=1), aus

    def metrics_of(self, index: np.ndarray, probs: np.ndarray, au_probs: np.ndarray | None) -> dict:
        """Accuracy and macro-F1 against the hard labels (the packed targets are no distribution)."""

        labels = self.data.labels[index]
        loss = (
            float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).mean())
            if len(labels)
            else float("nan")
        )
        return {
            "loss": loss,
            "accuracy": accuracy(labels, probs),
            "macro_f1": macro_f1(labels, probs, num_classes=self.data.num_classes),
        }


def student_worker(config: dict) -> None:
    """Entry point of the student's single Ray Train worker (``train_loop_per_worker``)."""
    import ray
    import ray.train

    quiet_train_context_logger()
    cfg = TrainConfig.model_validate(config["train"])
    data, targets = config["data"], config["targets"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    if isinstance(targets, ray.ObjectRef):
        targets = np.array(ray.get(targets))  # a writable copy: torch refuses to share read-only memory
    torch.set_num_threads(int(config.get("threads") or 1))
    torch.manual_seed(cfg.run.seed * 1009)
    device = torch.device("cpu")
    if ray.get_gpu_ids() and torch.cuda.is_available():  # given a GPU that CUDA sees
        import ray.train.torch

        device = ray.train.torch.get_device()
    train_index = np.asarray(config["train_index"], dtype=np.int64)
    holdout_index = np.asarray(config["holdout_index"], dtype=np.int64)
    # What the rows predicted after the last epoch are: the holdout, or a candidate's selection fold.
    eval_name = str(config.get("eval_name") or "holdout")
    teacher, groups = config.get("teacher"), config.get("groups")
    if teacher is not None:
        from ferray.distill._online import OnlineTeacher

        pack = ray.get(teacher) if isinstance(teacher, ray.ObjectRef) else teacher
        teacher = OnlineTeacher.from_pack(pack, device=device)
        groups = np.asarray(ray.get(groups) if isinstance(groups, ray.ObjectRef) else groups, dtype=np.int64)
    trainer = StudentTrainer(
        cfg,
        data,
        train_index,
        targets,
        alpha=config["alpha"],
        temperature=config["temperature"],
        device=device,
        teacher=teacher,
        groups=groups,
    )
    history: list[dict] = []
    last_report = None
    for epoch in range(cfg.run.epochs):
        try:
            stats = trainer.train_epoch(epoch)
        except NonFiniteLossError as exc:
            raise RuntimeError(str(exc)) from None
        report = {
            "epoch": epoch + 1,
            "train_loss": stats.train_loss,
            "lr": stats.lr,
            "epoch_seconds": stats.seconds,
            "images_per_second": stats.images / max(stats.seconds, 1e-9),
            "final": epoch + 1 == cfg.run.epochs,
        }
        history.append(report)
        if not report["final"]:
            if last_report is None or time.monotonic() - last_report >= REPORT_EVERY_S:
                ray.train.report(report)
                last_report = time.monotonic()
            continue
        t = time.perf_counter()
        tta = list(cfg.augment.tta)
        if len(holdout_index):
            probs, _ = trainer.predict(holdout_index, tta)
            report.update(
                {f"{eval_name}_{k}": float(v) for k, v in trainer.metrics_of(holdout_index, probs, None).items()}
            )
        else:
            probs = np.zeros((0, data.num_classes), np.float32)
        report["predict_seconds"] = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            save_weights(trainer.eval_model, Path(tmp) / CHECKPOINT_WEIGHTS, config["weights_meta"])
            np.save(Path(tmp) / CHECKPOINT_HOLDOUT, probs)
            (Path(tmp) / CHECKPOINT_HISTORY).write_text(json.dumps(history, default=float))
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name="student")
