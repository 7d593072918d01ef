"""The TensorBoard callback: one TensorBoard run per trial, written on the background writer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ray.tune import Callback

from ferray.search.callbacks._writer import background_writer

__all__ = ["TensorBoardCallback"]

_SCALARS = (
    "metric",
    "val_accuracy_mean",
    "val_accuracy_std",
    "val_macro_f1_mean",
    "val_macro_f1_std",
    "val_loss_mean",
    "val_loss_std",
    "val_au_f1_mean",
    "train_loss_mean",
    "lr",
    "epoch_seconds",
)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TensorBoardCallback(Callback):
    """One TensorBoard run per trial under ``<run_dir>/tensorboard/<trial_id>``: config and per-epoch metrics.

    Writers live on the background writer's thread; the event loop only hands over numbers.
    """

    def __init__(self, logdir: str | Path, metric: str = "metric"):
        self.logdir = Path(logdir)
        self.metric = metric
        self._writers: dict[str, Any] = {}
        self._last: dict[str, dict] = {}

    def __getstate__(self) -> dict:
        return {"logdir": self.logdir, "metric": self.metric, "_writers": {}, "_last": {}}

    def _writer(self, trial_id: str, config: dict):  # background thread only
        writer = self._writers.get(trial_id)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(self.logdir / trial_id))
            text = "\n".join(f"    {k}: {v}" for k, v in sorted(config.items()))
            writer.add_text("config", text or "(base config)", 0)
            self._writers[trial_id] = writer
        return writer

    def on_trial_result(self, iteration, trials, trial, result, **info):
        trial_id, config = trial.trial_id, dict(trial.config)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        scalars = {
            key: float(value)
            for key, value in result.items()
            if (key in _SCALARS or key.startswith("val_accuracy_fold")) and _finite(value)
        }
        self._last[trial_id] = dict(result)

        def write() -> None:
            writer = self._writer(trial_id, config)
            for key, value in scalars.items():
                writer.add_scalar(
                    key if key == "metric" else f"val/{key}" if key.startswith("val_") else f"train/{key}", value, step
                )
            writer.flush()

        background_writer().submit(None, write)

    def _close(self, trial) -> None:
        trial_id, config = trial.trial_id, dict(trial.config)
        last = self._last.pop(trial_id, None)
        if last is None:
            return

        def close() -> None:
            writer = self._writers.pop(trial_id, None)
            if writer is None:
                return
            hparams = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
            if hparams and _finite(last.get("metric")):
                writer.add_hparams(hparams, {"hparam/metric": float(last["metric"])}, run_name=".")
            writer.close()

        background_writer().submit(None, close)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            self._close(trial)
        background_writer().flush()
