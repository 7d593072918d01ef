"""The sections of a run's spec that say how much to spend and what the stages after the trials do.

A spec file (:mod:`ferray.run.spec`) holds, besides the training config and the space:

* ``budget``: trials, epochs, early stopping (ASHA) and stall limits (:class:`BudgetConfig`);
* ``search``: sampler, seed, metric override, objectives, warm start (:class:`SearchConfig`, :class:`Objective`);
* ``tracking``: TensorBoard (always) and Weights & Biases (:class:`TrackingConfig`);
* ``ensemble``, ``distill`` and ``retention``: settings the stages after the sweep read
  (:class:`EnsembleConfig`, :class:`DistillConfig`, :class:`RetentionConfig`).

Each is a typed model that rejects unknown keys; the stages read them from the run's spec
(:func:`ferray.run.read_run_spec`) and never re-parse ``spec.yaml`` themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ferray._config import StrictModel
from ferray.errors import closest
from ferray.run.warm_start import WarmStartConfig
from ferray.training.watch import StallLimits

__all__ = [
    "BudgetConfig",
    "SearchConfig",
    "Objective",
    "OBJECTIVE_METRICS",
    "WandbConfig",
    "TrackingConfig",
    "GreedyConfig",
    "GREEDY_POOLS",
    "EnsembleConfig",
    "check_greedy_pool",
    "DistillConfig",
    "RetentionConfig",
]


class BudgetConfig(StrictModel):
    """How much the sweep may spend, and how early it stops weak trials (ASHA)."""

    trials: int = Field(8, ge=1, le=100_000, description="Configurations sampled.")
    max_epochs: int = Field(10, ge=1, le=10_000, description="Epochs of a trial that is never stopped.")
    grace_period: int = Field(1, ge=1, description="Epochs every trial runs before ASHA may stop it.")
    reduction_factor: float = Field(3, ge=2, description="ASHA keeps the top 1/reduction_factor at each rung.")
    early_stopping: bool = Field(True, description="false: every trial runs max_epochs (no ASHA).")
    time_limit_s: float | None = Field(None, gt=0, description="Stop starting/continuing trials after this.")
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials at once; None: as many as the resource plan fits."
    )
    startup_timeout_s: float = Field(
        900,
        gt=0,
        description="A trial with no report this long after it started is failed as 'stalled' "
        "(so are `ferray train SPEC` and `ferray distill`'s student).",
    )
    stall_timeout_s: float | None = Field(
        None,
        gt=0,
        description="A trial with no report this long after its last is failed as 'stalled' (so are "
        "`ferray train SPEC` and `ferray distill`'s student); None: max(300 s, 5 x its longest epoch so far).",
    )

    def stall_limits(self) -> StallLimits:
        """The trials' stall limits (:class:`ferray.training.watch.StallLimits`)."""
        return StallLimits(startup_s=self.startup_timeout_s, every_s=self.stall_timeout_s)

    @model_validator(mode="after")
    def _grace(self) -> BudgetConfig:
        if self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period = {self.grace_period} must be <= max_epochs = {self.max_epochs}")
        return self


#: Metrics ``search.objectives`` accepts -> the direction that is better. accuracy, macro_f1 and
#: loss are fold means (per epoch); the others are a trial's cost, fixed by its architecture:
#: latency_ms (ms per image at batch 1), latency_ms_b64 (ms per batch of 64), params, macs.
OBJECTIVE_METRICS = {
    "accuracy": "max",
    "macro_f1": "max",
    "loss": "min",
    "latency_ms": "min",
    "latency_ms_b64": "min",
    "params": "min",
    "macs": "min",
}

#: The objective metrics that a trial's epochs score (the others are its cost).
QUALITY_METRICS = ("accuracy", "macro_f1", "loss")


class Objective(StrictModel):
    """One objective of a multi-objective search: a metric and the direction that is better."""

    metric: str = Field(description="One of " + ", ".join(OBJECTIVE_METRICS) + ".")
    direction: Literal["max", "min"] | None = Field(
        None, description="max or min; None: the metric's own (max for accuracy and macro_f1, min for the others)."
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in OBJECTIVE_METRICS:
            accepted = ", ".join(OBJECTIVE_METRICS)
            raise ValueError(f"metric is {value!r}, but must be one of {accepted}{closest(value, OBJECTIVE_METRICS)}")
        return value

    @model_validator(mode="after")
    def _direction(self) -> Objective:
        natural = OBJECTIVE_METRICS[self.metric]
        if self.direction is None:
            self.direction = natural
        elif self.direction != natural:
            word = "maximised" if natural == "max" else "minimised"
            raise ValueError(
                f"direction is {self.direction!r}, but {self.metric} can only be {word} (direction: {natural})"
            )
        return self

    @property
    def mode(self) -> str:
        """``"max"`` or ``"min"`` (the direction, always set after validation)."""
        return self.direction or OBJECTIVE_METRICS[self.metric]

    @property
    def key(self) -> str:
        """The key of this objective in a trial's reports and in ``results.parquet``."""
        return f"val_{self.metric}_mean" if self.metric in QUALITY_METRICS else self.metric

    @property
    def is_cost(self) -> bool:
        """Whether the metric is a trial's cost (fixed by its architecture), not a score."""
        return self.metric not in QUALITY_METRICS


class SearchConfig(StrictModel):
    """The searcher."""

    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    multivariate: bool = Field(True, description="TPE models parameters jointly (grouped for conditions).")
    n_startup_trials: int | None = Field(
        None, ge=0, description="Random trials before TPE; None: min(10, max(2, trials // 3))."
    )
    metric: Literal["accuracy", "macro_f1", "loss"] | None = Field(
        None, description="Overrides run.metric: the fold mean that is optimised."
    )
    warm_start: WarmStartConfig = Field(
        default_factory=WarmStartConfig,
        description="Earlier runs to start from (run folders, storage URIs, Optuna study files); "
        "see ferray.run.warm_start.",
    )
    objectives: list[Objective] | None = Field(
        None,
        description="Several objectives searched together (a Pareto front, e.g. accuracy against "
        "latency_ms); None: the one fold mean of search.metric / run.metric.",
    )

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[Objective] | None) -> list[Objective] | None:
        if value is None:
            return None
        if len(value) < 2:
            raise ValueError(
                f"objectives lists {len(value)} objective(s), but needs at least 2; for one fold mean "
                "set search.metric (accuracy, macro_f1 or loss) instead"
            )
        names = [o.metric for o in value]
        twice = [n for i, n in enumerate(names) if n in names[:i]]
        if twice:
            raise ValueError(f"objectives name {twice[0]!r} twice; list each metric once")
        if value[0].metric not in QUALITY_METRICS:
            raise ValueError(
                f"objectives[0] is {value[0].metric!r}, but the first objective must be a fold mean "
                f"({', '.join(QUALITY_METRICS)}): it ranks the trials for early stopping's ties, the "
                "best trial and the ensemble"
            )
        return value

    @model_validator(mode="after")
    def _metric_and_objectives(self) -> SearchConfig:
        if self.objectives and self.metric is not None and self.metric != self.objectives[0].metric:
            raise ValueError(
                f"metric is {self.metric!r} but objectives[0] is {self.objectives[0].metric!r}; "
                "drop search.metric (the first objective is the optimised fold mean) or make them the same"
            )
        return self

    @property
    def multi_objective(self) -> bool:
        """Whether the search has several objectives (``objectives`` set)."""
        return bool(self.objectives)


class WandbConfig(StrictModel):
    enabled: bool = False
    project: str = "ferray"
    entity: str | None = None
    mode: Literal["auto", "online", "offline"] = Field(
        "auto", description="auto: online with WANDB_API_KEY set, else offline (sync later with `wandb sync`)."
    )
    tags: list[str] = Field(default_factory=list)


class TrackingConfig(StrictModel):
    """Experiment tracking. TensorBoard logs are always written under the run directory."""

    wandb: WandbConfig = Field(default_factory=WandbConfig)


#: The named values of ``ensemble.greedy.pool`` (besides an integer N >= 1).
GREEDY_POOLS = ("all", "top_k")


class GreedyConfig(StrictModel):
    """Caruana's greedy selection, and the trials it may pick from (its pool).

    ``pool`` says which completed trials greedy selection draws from; the other methods
    always combine the ``top_k`` best by fold mean:

    * ``all`` (default): every completed trial with predictions whose weights are on disk.
      The retention policy keeps a completed trial's weights until an ensemble has
      considered it (its id in ``ensemble.json``'s ``pool``), then prunes the non-members.
    * ``top_k``: the same ``top_k`` trials as the other methods (selection by rank only).
    * an integer N: the best N completed trials (never fewer than ``top_k``); the retention
      policy keeps the weights of the best ``max(top_k, keep_top, N) + margin``.
    """

    iterations: int = Field(50, ge=1, description="Caruana greedy selection rounds (with replacement).")
    bags: int = Field(
        1,
        ge=1,
        description="Bagged selection: bags of members, each selecting from a random "
        "bag_fraction of them; the weights are the bags' mean (1: no bagging).",
    )
    bag_fraction: float = Field(0.5, gt=0, le=1, description="Share of the members each bag selects from.")
    pool: Literal["all", "top_k"] | int = Field(
        "all",
        description="Trials greedy selection draws from: all (every completed trial whose weights are "
        "on disk), top_k (the top_k by fold mean, as the other methods) or N (the best N).",
    )

    @field_validator("pool", mode="before")
    @classmethod
    def _pool(cls, value: Any) -> str | int:
        return check_greedy_pool(value)


def check_greedy_pool(value: Any) -> str | int:
    """A value of ``ensemble.greedy.pool``: ``"all"``, ``"top_k"`` or an integer >= 1 (``"5"`` too).

    Raises:
        ValueError: anything else, naming the value and what is accepted.
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, str) and value in GREEDY_POOLS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    hint = closest(value, GREEDY_POOLS) if isinstance(value, str) else ""
    raise ValueError(
        f"pool is {value!r}, but must be 'all' (every completed trial whose weights are on disk), "
        "'top_k' (the top_k trials the other methods combine) or an integer >= 1 (the best N "
        f"completed trials){hint}"
    )


class EnsembleConfig(StrictModel):
    """Read by ``ferray ensemble`` and after every sweep: which trials and how to combine them."""

    enabled: bool = Field(True, description="Ensemble the top trials when the sweep ends (ferray search/resume).")
    export: bool = Field(True, description="Export the chosen ensemble (and student) as a bundle after it.")
    top_k: int = Field(5, ge=1, description="Best trials (by fold mean) whose OOF predictions are combined.")
    # The names of ferray.ensemble.ENSEMBLE_METHODS (spelt out here: search never imports upward).
    methods: list[Literal["greedy", "stacking", "mean", "vote"]] = Field(
        default_factory=lambda: ["greedy"],
        min_length=1,
        description="Ensemble methods to fit; the best by OOF log-loss is chosen.",
    )
    greedy: GreedyConfig = Field(default_factory=GreedyConfig)
    seed: int = 0
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        description="Latency budget: the ensemble's members together must run within this many ms per "
        "image at batch 1 (each member: its trial's latency_ms x its fold models); None: no budget.",
    )

    @property
    def greedy_pool(self) -> str | int | None:
        """``greedy.pool`` when greedy is among the methods, else ``None`` (what retention plans for)."""
        return self.greedy.pool if "greedy" in self.methods else None


class DistillConfig(StrictModel):
    """Read by ``ferray distill``: a small student trained to match the chosen ensemble.

    ``teacher``: ``online`` (default) runs the ensemble's member models on every training
    batch, on the same augmented and mixed images the student sees (function matching,
    Beyer et al. 2022), each cross-validation row scored only by the fold models that never
    trained on it; ``fixed`` learns the ensemble's stored out-of-fold probabilities (one
    target per row, whatever the augmentation did to the image).

    ``student`` is one timm backbone or a list of candidates; ``max_latency_ms`` drops the
    candidates slower than that (batch 1, this machine's CPU), and of several left the one
    most accurate on one fold of the cross-validation rows is trained on all of them.
    """

    #: ``epochs: null`` trains the student this many times a member's epochs (``budget.max_epochs``).
    EPOCHS_FACTOR: ClassVar[int] = 3

    enabled: bool = False
    teacher: Literal["online", "fixed"] = Field(
        "online",
        description="online: the member models score every augmented, mixed training batch; fixed: "
        "the ensemble's stored out-of-fold probabilities.",
    )
    student: str | list[str] = Field(
        "mobilenetv3_small_050",
        description="timm backbone of the student, or a list of candidates (the best "
        "on one fold of the cross-validation rows is kept).",
    )
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        description="Drop candidates slower than this many ms per image at batch 1 on the CPU of the "
        "machine running `ferray distill`; None: no cap.",
    )
    epochs: int | None = Field(
        None,
        ge=1,
        description="Student epochs; None: 3 x budget.max_epochs (students are "
        "cheap, and matching a teacher's function takes longer than learning labels).",
    )
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="Weight of the soft-label loss (1 - alpha: hard labels).")
    batch_size: int | None = Field(None, ge=1, le=65_536, description="Student batch size; None: run.batch_size.")
    transfer: str | None = Field(
        None,
        description="Extra unlabelled images (a data source, e.g. 'synthetic:basic7?count=500') labelled "
        "by the ensemble's models; None: only the cross-validation rows.",
    )

    @field_validator("student", mode="before")
    @classmethod
    def _student(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            return value
        names = list(value)
        if not names:
            raise ValueError(
                "student is an empty list, but must be a timm backbone name or a non-empty list of candidate names"
            )
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(
                    f"student candidate {name!r} is not a backbone name; give timm names, e.g. "
                    "[mobilenetv3_small_050, resnet10t]"
                )
        twice = [n for i, n in enumerate(names) if n in names[:i]]
        if twice:
            raise ValueError(f"student names {twice[0]!r} twice; list each candidate once")
        return names

    @property
    def candidates(self) -> list[str]:
        """The student backbone(s), in the order given."""
        return [self.student] if isinstance(self.student, str) else list(self.student)

    def epochs_for(self, member_epochs: int) -> int:
        """The student's epochs: ``epochs``, or ``EPOCHS_FACTOR x member_epochs`` when None."""
        return self.epochs if self.epochs is not None else self.EPOCHS_FACTOR * int(member_epochs)


class RetentionConfig(StrictModel):
    """What the run directory keeps of each trial (see :mod:`ferray.run.retention`).

    A running trial always keeps only its last complete epoch checkpoint (Ray Train holds the
    previous one until the new one is whole). When a trial ends, on the sweep's driver:

    * completed: its epoch checkpoints go; its ``weights/`` stay while it is among the best
      ``max(ensemble.top_k, keep_top) + margin`` completed trials by fold mean (``max(ensemble.top_k,
      keep_top, N) + margin`` with ``ensemble.greedy.pool: N``), or a member of
      ``ensemble/ensemble.json``, or (greedy with ``pool: all``) not yet considered by an ensemble,
      else they go too. Metrics and predictions always stay;
    * pruned: checkpoints and weights go, unless ``keep_pruned_weights``;
    * errored: the last checkpoint stays (``ferray resume --retry-errored`` continues from it)
      unless ``keep_errored_checkpoint: false``; then a retry starts from epoch 1.

    ``ferray prune RUN`` applies the same rules to a run on request.
    """

    enabled: bool = Field(
        True,
        description="Apply the policy as trials end and after the ensemble; false: "
        "ended trials keep everything (`ferray prune` still applies it).",
    )
    keep_top: int | None = Field(
        None,
        ge=1,
        description="Completed trials that keep their weights: the best N by fold mean; None: ensemble.top_k.",
    )
    margin: int = Field(
        2,
        ge=0,
        description="Trials beyond max(ensemble.top_k, keep_top) that keep their "
        "weights too (a later `ferray ensemble --top` a little larger).",
    )
    half_precision_weights: bool = Field(
        False,
        description="Store every kept weights file as float16 when its trial ends (half the bytes; predictions "
        "change in the 4th decimal), the ensemble's members too: the bundle then reads float16 weights.",
    )
    half_precision_candidates: bool = Field(
        False,
        description="Store as float16 the kept weights of trials an ensemble considered and did not choose "
        "(kept only for a later `ferray ensemble`); the members keep their precision.",
    )
    keep_pruned_weights: bool = Field(
        False, description="Pruned trials keep their weights (when they wrote any) and last epoch checkpoint."
    )
    keep_errored_checkpoint: bool = Field(
        True, description="Errored trials keep their last epoch checkpoint for `ferray resume --retry-errored`."
    )

    def candidates(self, top_k: int, keep_top: int | None = None, pool: str | int | None = None) -> int:
        """How many of the best completed trials keep their weights: ``keep_top`` when given
        (``ferray prune --keep-top N``), else ``max(top_k, self.keep_top, pool) + margin``, where
        ``pool`` counts only as an integer (``ensemble.greedy.pool: N``)."""
        if keep_top is not None:
            return keep_top
        n_pool = pool if isinstance(pool, int) and not isinstance(pool, bool) else 0
        return max(top_k, self.keep_top or 0, n_pool) + self.margin
