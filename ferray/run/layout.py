"""Where everything of a run directory and of a trial folder lives.

Every stage (search, status, resume, ensemble, distill, export, report) finds files
through :class:`RunLayout` and :class:`TrialLayout` instead of repeating file names::

    runs/quickstart-20261130-120000/      RunLayout(run_dir)
      ferray_run.json                     manifest: resolved spec, data fingerprint, budget
      spec.yaml                           the spec the sweep started with
      folds.parquet                       the fold plan every trial shares
      optuna.db                           the Optuna study (SQLite)
      warm_start.json                     the earlier runs a warm-started sweep started from, and how
      results.parquet                     one row per trial per epoch
      retention.jsonl                     one line per trial the retention policy cleaned: files, bytes
      ferray.log                          Ray's and the workers' logs
      tensorboard/  wandb/                tracking
      ensemble/                           EnsembleLayout(run.ensemble): ensembles of the top trials
        ensembles.parquet  ensemble.json  the table of members and methods; weights, chosen method
        oof.parquet  holdout.parquet      the chosen ensemble's predictions (soft targets)
      distill/                            DistillLayout(run.distill): the distilled student
        weights/fold_0.safetensors        the student (trial weights format), config.yaml, holdout.parquet
        distill.json                      student vs ensemble vs best trial: scores, parameters, latency
      bundle/                             BundleLayout(run.bundle): the exported ONNX bundle
      report/                             ReportLayout(run.report): ``ferray report`` / ``ferray explain``
        index.html  report.json           the page and the same numbers; figures/*.png beside them
      <trial_id>/                         TrialLayout(run_dir / trial_id)
        config.yaml                       the trial's resolved training config
        checkpoints/epoch_NNNN/fold_i.pt  resumable training state per epoch
        weights/fold_i.safetensors        the weights that made oof/holdout predictions
        oof.parquet  holdout.parquet      predictions (see ferray.run.predictions)
        metrics.json  epochs.jsonl
        retention.json                    what the retention policy removed (and the reports to replay)

This module imports nothing heavy: it is the one list of names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ferray.errors import ConfigError

__all__ = [
    "RunLayout",
    "TrialLayout",
    "EnsembleLayout",
    "DistillLayout",
    "BundleLayout",
    "ReportLayout",
    "check_run_name",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_run_name(name: str, what: str = "--name") -> str:
    """``name`` if it is a plain folder name; else ``ConfigError`` saying what is accepted.

    >>> check_run_name("exp1")
    'exp1'
    """

    if not isinstance(name, str) or not _NAME.match(name) or name in (".", "..") or ".." in name:
        raise ConfigError(
            f"{what} {name!r}: a run name is one folder name of letters, digits, '_', '-' and '.' "
            "(starting with a letter or digit, no '/', '\\' or '..')"
        )
    return name


@dataclass(frozen=True)
class TrialLayout:
    """The files of one trial's folder (also of a standalone ``ferray train`` output folder)."""

    root: Path

    CONFIG = "config.yaml"
    OOF = "oof.parquet"
    HOLDOUT = "holdout.parquet"
    METRICS = "metrics.json"
    EPOCHS = "epochs.jsonl"
    CHECKPOINTS = "checkpoints"
    WEIGHTS = "weights"
    RETENTION = "retention.json"  # written by the retention policy (ferray.run.retention) when it cleaned the trial
    FOLDS = "folds.parquet"  # standalone `ferray train` only; a sweep's trials share the run's

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def trial_id(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def oof(self) -> Path:
        return self.root / self.OOF

    @property
    def holdout(self) -> Path:
        return self.root / self.HOLDOUT

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def epochs(self) -> Path:
        return self.root / self.EPOCHS

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    @property
    def weights_dir(self) -> Path:
        return self.root / self.WEIGHTS

    @property
    def retention(self) -> Path:
        return self.root / self.RETENTION

    def weights(self, fold: int) -> Path:
        """The safetensors file of fold ``fold``'s final (evaluated) model weights."""
        return self.weights_dir / f"fold_{fold}.safetensors"

    def checkpoint_epochs(self) -> list[Path]:
        """The trial's epoch checkpoint folders, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if p.is_dir() and p.name.startswith("epoch_"))

    def fold_checkpoint(self, epoch_dir: Path, fold: int) -> Path:
        return Path(epoch_dir) / f"fold_{fold}.pt"


@dataclass(frozen=True)
class EnsembleLayout:
    """The files ``ferray ensemble`` writes to a run's ``ensemble/`` folder (see :mod:`ferray.ensemble`)."""

    root: Path

    TABLE = "ensembles.parquet"  # one row per member and per ensemble method, OOF and holdout metrics
    SUMMARY = "ensemble.json"  # members, each method's weights or coefficients, the chosen method
    OOF = TrialLayout.OOF  # the chosen ensemble's out-of-fold predictions (Predictions format)
    HOLDOUT = TrialLayout.HOLDOUT  # its holdout predictions, one row per holdout row, fold -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def table(self) -> Path:
        return self.root / self.TABLE

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def oof(self) -> Path:
        return self.root / self.OOF

    @property
    def holdout(self) -> Path:
        return self.root / self.HOLDOUT


@dataclass(frozen=True)
class BundleLayout:
    """The files of an exported bundle (``ferray export`` writes it, ``ferray predict`` reads it)::

    bundle/                              BundleLayout(run.bundle)
      manifest.json                      format, classes, input, members, sha256 of each file
      ensemble.onnx                      uint8 NHWC images -> class probabilities
      student.onnx                       the distilled student (when the run has one)
      weights/<member>/fold_i.safetensors  the members' weights (hard links to the trials' files where
                                         the file system allows); the graphs read theirs from these files
    """

    root: Path

    #: Bundle format this ferray writes and the newest it reads (``manifest.json`` "format").
    FORMAT = 1
    MANIFEST = "manifest.json"
    ENSEMBLE = "ensemble.onnx"
    STUDENT = "student.onnx"
    WEIGHTS = "weights"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def ensemble(self) -> Path:
        return self.root / self.ENSEMBLE

    @property
    def student(self) -> Path:
        return self.root / self.STUDENT

    @property
    def weights_dir(self) -> Path:
        return self.root / self.WEIGHTS

    def weights(self, member: str, fold: int) -> Path:
        """``member``'s fold ``fold`` weights (the graphs read their tensors from this file)."""
        return self.weights_dir / member / f"fold_{fold}.safetensors"


@dataclass(frozen=True)
class DistillLayout(TrialLayout):
    """The files ``ferray distill`` writes to a run's ``distill/`` folder (see :mod:`ferray.distill`).

    A trial-shaped folder with one model: ``weights/fold_0.safetensors``, ``config.yaml``
    and ``holdout.parquet`` as a trial's, plus ``distill.json`` (student vs ensemble vs best
    trial: holdout scores, parameters, latency).
    """

    SUMMARY = "distill.json"

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY


@dataclass(frozen=True)
class ReportLayout:
    """The files ``ferray report`` writes (``RUN/report/`` by default; see :mod:`ferray.report`)::

    report/
      index.html        the page (opens offline: figures are files beside it, or inlined)
      report.json       the same numbers, machine-readable
      figures/*.png     one file per figure
      explain/          ``ferray explain``'s default output: overlays, grid.png, explain.json
    """

    root: Path

    INDEX = "index.html"
    JSON = "report.json"
    FIGURES = "figures"
    EXPLAIN = "explain"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def index(self) -> Path:
        return self.root / self.INDEX

    @property
    def json(self) -> Path:
        return self.root / self.JSON

    @property
    def figures(self) -> Path:
        return self.root / self.FIGURES

    def figure(self, name: str) -> Path:
        """The PNG file of figure ``name``."""
        return self.figures / f"{name}.png"

    @property
    def explain(self) -> Path:
        return self.root / self.EXPLAIN


@dataclass(frozen=True)
class RunLayout:
    """The files of a sweep's run directory."""

    root: Path

    MANIFEST = "ferray_run.json"
    SPEC = "spec.yaml"
    FOLDS = "folds.parquet"
    STUDY = "optuna.db"
    WARM_START = "warm_start.json"
    RESULTS = "results.parquet"
    RETENTION = "retention.jsonl"
    LOG = "ferray.log"
    TENSORBOARD = "tensorboard"
    WANDB = "wandb"
    ENSEMBLE = "ensemble"
    DISTILL = "distill"
    BUNDLE = "bundle"
    REPORT = "report"

    #: Files every sweep's run directory holds once it has started.
    REQUIRED = (MANIFEST, SPEC, FOLDS, STUDY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def spec(self) -> Path:
        return self.root / self.SPEC

    @property
    def folds(self) -> Path:
        return self.root / self.FOLDS

    @property
    def study(self) -> Path:
        return self.root / self.STUDY

    @property
    def results(self) -> Path:
        return self.root / self.RESULTS

    @property
    def warm_start(self) -> Path:
        """What a warm-started sweep took from each earlier run (see :mod:`ferray.run.warm_start`)."""
        return self.root / self.WARM_START

    @property
    def retention(self) -> Path:
        """Append-only log of what the retention policy removed (``ferray status`` sums it)."""
        return self.root / self.RETENTION

    @property
    def log(self) -> Path:
        return self.root / self.LOG

    @property
    def tensorboard(self) -> Path:
        return self.root / self.TENSORBOARD

    @property
    def wandb(self) -> Path:
        return self.root / self.WANDB

    @property
    def ensemble(self) -> Path:
        return self.root / self.ENSEMBLE

    @property
    def ensemble_files(self) -> EnsembleLayout:
        """The files of the ``ensemble/`` folder."""
        return EnsembleLayout(self.ensemble)

    @property
    def distill(self) -> Path:
        return self.root / self.DISTILL

    @property
    def distill_files(self) -> DistillLayout:
        """The files of the ``distill/`` folder."""
        return DistillLayout(self.distill)

    @property
    def bundle(self) -> Path:
        return self.root / self.BUNDLE

    @property
    def report(self) -> Path:
        return self.root / self.REPORT

    @property
    def report_files(self) -> ReportLayout:
        """The files of the ``report/`` folder."""
        return ReportLayout(self.report)

    def trial(self, trial_id: str) -> TrialLayout:
        return TrialLayout(self.root / trial_id)

    def trials(self) -> list[TrialLayout]:
        """Every trial folder (a folder holding a config, predictions or checkpoints)."""
        if not self.root.is_dir():
            return []
        stages = {self.ENSEMBLE, self.DISTILL, self.BUNDLE, self.REPORT, self.TENSORBOARD, self.WANDB}
        out = []
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(".") or p.name in stages:
                continue
            if p.is_dir() and any(
                (p / f).exists() for f in (TrialLayout.CONFIG, TrialLayout.OOF, TrialLayout.CHECKPOINTS)
            ):
                out.append(TrialLayout(p))
        return out

    def is_run(self) -> bool:
        return self.manifest.exists()

    def missing(self) -> list[str]:
        return [f for f in self.REQUIRED if not (self.root / f).exists()]
