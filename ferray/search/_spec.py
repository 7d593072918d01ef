"""The typed search spec: a training config (the fixed base of every trial) plus a search.

A spec file has the :class:`~ferray.training.config.TrainConfig` sections (``data``,
``folds``, ``model``, ``loss``, ``augment``, ``optim``, ``run``, ``resources``) and:

* ``name``: the sweep's name (run directory, Optuna study name);
* ``space``: the parameters to search, each a dotted path into the trial config;
* ``budget``: trials, epochs and early stopping (ASHA);
* ``search``: sampler, seed, metric override;
* ``tracking``: TensorBoard (always) and Weights & Biases;
* ``ensemble`` and ``distill``: settings the later stages read;
* ``retention``: what the run directory keeps of each trial once it ended.

Everything is checked by :func:`load_search_spec` before Ray starts; every error names the
file, line and key path.

>>> spec = SearchSpec.model_validate({"name": "demo", "space": {
...     "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})
>>> spec.budget.trials, spec.space["optim.lr"].log
(8, True)
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ferray._config import StrictModel, YamlDoc, format_errors, load_yaml, validate_model
from ferray.errors import ConfigError, closest
from ferray.training.config import TrainConfig

__all__ = [
    "ParamSpec",
    "BudgetConfig",
    "SearchConfig",
    "WandbConfig",
    "TrackingConfig",
    "GreedyConfig",
    "EnsembleConfig",
    "check_greedy_pool",
    "DistillConfig",
    "RetentionConfig",
    "SearchSpec",
    "load_search_spec",
    "packaged_spec",
    "PACKAGED_SPECS",
]

Scalar = str | int | float | bool | None


class ParamSpec(StrictModel):
    """One searched parameter: ``type`` with inclusive ``low``/``high`` or ``choices``.

    ``when`` makes it conditional: ``{loss.name: focal}`` or ``{loss.name: [focal, ...]}``;
    the parameter is only sampled (and only applied) when every condition holds.
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = Field(None, description="Inclusive lower bound (float, int).")
    high: float | None = Field(None, description="Inclusive upper bound (float, int).")
    log: bool = Field(False, description="Sample on a log scale (float, int; low must be > 0).")
    step: float | None = Field(None, gt=0, description="Grid step (int; float without log).")
    choices: list[Any] | None = Field(None, description="Values of a categorical parameter.")
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="Conditions: other parameter path -> value or list of values."
    )

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        # Per-type checks that need no knowledge of the training config.
        if self.type == "categorical":
            for key in ("low", "high", "step"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' does not apply to type categorical; list the values in 'choices'")
            if self.log:
                raise ValueError("'log' does not apply to type categorical")
            if self.choices is None:
                raise ValueError("type categorical needs 'choices', a non-empty list of values")
            if not self.choices:
                raise ValueError("'choices' is empty; list at least one value")
            for value in self.choices:
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise ValueError(
                        f"choice {value!r} is not accepted; choices must be strings, numbers, booleans or null"
                    )
            if len({repr(v) for v in self.choices}) != len(self.choices):
                raise ValueError(f"'choices' has duplicates: {self.choices}")
            return self
        if self.choices is not None:
            raise ValueError(f"'choices' does not apply to type {self.type}; use 'low' and 'high'")
        if self.low is None or self.high is None:
            missing = " and ".join(k for k in ("low", "high") if getattr(self, k) is None)
            raise ValueError(f"type {self.type} needs inclusive bounds: {missing} missing")
        if self.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"{key} = {value} is not an integer, but type is int")
        if self.low >= self.high:
            raise ValueError(f"low = {self.low:g} must be < high = {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, but low = {self.low:g}")
        if self.step is not None:
            if self.log:
                raise ValueError("'step' cannot be combined with log: true")
            n = (self.high - self.low) / self.step
            if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
                raise ValueError(
                    f"step = {self.step:g} does not divide high - low = {self.high - self.low:g}; "
                    "choose bounds a whole number of steps apart"
                )
        return self

    def describe(self) -> str:
        """A short human form: ``float [1e-05, 0.01] log``, ``categorical [a, b]``."""
        if self.type == "categorical":
            text = f"categorical {self.choices}"
        else:
            fmt = (lambda v: f"{int(v)}") if self.type == "int" else (lambda v: f"{v:g}")
            text = f"{self.type} [{fmt(self.low)}, {fmt(self.high)}]"
            if self.log:
                text += " log"
            if self.step is not None:
                text += f" step {self.step:g}"
        if self.when:
            text += " when " + ", ".join(f"{k} in {v if isinstance(v, list) else [v]}" for k, v in self.when.items())
        return text


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

    def stall_limits(self):
        from ferray.search._stall import StallLimits

        return StallLimits(startup_s=self.startup_timeout_s, every_s=self.stall_timeout_s)

    @model_validator(mode="after")
    def _grace(self) -> BudgetConfig:
        if self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period = {self.grace_period} must be <= max_epochs = {self.max_epochs}")
        return self


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
    """What the run directory keeps of each trial (see :mod:`ferray.search._retention`).

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
        False, description="Store kept weights as float16 (half the bytes; predictions change in the 4th decimal)."
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


class SearchSpec(TrainConfig):
    """A search spec: the base training config of every trial plus the search settings."""

    name: str = Field(
        "search", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Sweep name: letters, digits, '_', '-', '.'."
    )
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @field_validator("space")
    @classmethod
    def _non_empty(cls, space: dict) -> dict:
        if not space:
            raise ValueError("the space is empty; add at least one parameter, e.g. optim.lr")
        return space

    @property
    def metric(self) -> str:
        """The fold-mean metric optimised (``search.metric`` or ``run.metric``)."""
        return self.search.metric or self.run.metric

    @property
    def mode(self) -> str:
        return "min" if self.metric == "loss" else "max"

    def base_config(self) -> TrainConfig:
        """The training config every trial starts from (epochs = budget.max_epochs)."""
        return TrainConfig.model_validate(self.base_dict())

    def base_dict(self) -> dict:
        data = self.model_dump(mode="json", include=set(TrainConfig.model_fields))
        data["run"]["epochs"] = self.budget.max_epochs
        data["run"]["metric"] = self.metric
        return data


# Paths every trial shares: one data load, one fold plan, one resource plan, one budget.
_FIXED = {
    "data": "every trial trains on the same data, loaded once",
    "folds": "every trial uses the same fold plan, computed once",
    "resources": "the resource plan is made once for the sweep",
    "run.epochs": "budget.max_epochs sets every trial's epochs",
    "run.metric": "search.metric sets the optimised metric",
}


#: Specs shipped with ferray (``ferray search`` with no file uses ``quickstart``).
PACKAGED_SPECS = ("quickstart", "fer2013", "ferplus", "rafce_multitask", "affectnet")


def packaged_spec(name: str = "quickstart") -> Path:
    """The path of a spec shipped inside the package (works for non-editable installs)."""
    if name not in PACKAGED_SPECS:
        from ferray.errors import closest

        raise ConfigError(
            f"no packaged spec {name!r}{closest(name, PACKAGED_SPECS)}; packaged: {', '.join(PACKAGED_SPECS)}"
        )
    return Path(str(resources.files("ferray.search") / "specs" / f"{name}.yaml"))


def load_search_spec(path: str | os.PathLike, *, text: str | None = None, check_backbones: bool = True) -> SearchSpec:
    """Load and fully validate a search spec (before any Ray work).

    Beyond the types, every searched path must be a training-config field, every choice
    and bound must be a value the training config accepts, conditions must name a
    parameter of the space or the base config, and every backbone must be known to timm.

    Raises:
        ConfigError: one line per problem, ``file:line: key.path: message``.
    """
    doc = load_yaml(path, text=text)
    raw = dict(doc)
    errors: list[str] = []
    space_raw = raw.pop("space", None)
    # The space's keys are free-form paths: validate each entry on its own so a misspelt
    # key inside it gets a did-you-mean (pydantic's dict errors lose the model path).
    params: dict[str, ParamSpec] = {}
    if not space_raw:
        errors.append(
            f"{_where(doc, ('space',))}space: the space is empty; add at least one parameter, "
            "e.g. optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}"
        )
    elif not isinstance(space_raw, dict):
        errors.append(
            f"{_where(doc, ('space',))}space: expected a mapping of dotted path -> parameter, "
            f"got {type(space_raw).__name__}"
        )
    else:
        for key, entry in space_raw.items():
            prefix = ("space", key)
            if not isinstance(entry, dict):
                errors.append(f"{_where(doc, prefix)}space.{key}: expected a mapping with 'type', got {entry!r}")
                continue
            try:
                params[str(key)] = ParamSpec.model_validate(entry)
            except ValidationError as exc:
                errors.append(format_errors(exc, ParamSpec, doc, prefix))
    spec = None
    try:
        spec = validate_model(SearchSpec, raw, doc)
    except ConfigError as exc:
        errors.append(str(exc))
    if errors or spec is None:
        raise ConfigError("\n".join(errors))
    spec.space = params
    errors.extend(check_space(spec, doc, check_backbones=check_backbones))
    if check_backbones and "model.backbone" not in spec.space:
        try:
            _check_backbone(spec.model.backbone)
        except ConfigError as exc:
            errors.append(f"{_where(doc, ('model', 'backbone'))}model.backbone: {exc}")
    if check_backbones and spec.distill.enabled:
        for name in spec.distill.candidates:
            try:
                _check_backbone(name)
            except ConfigError as exc:
                errors.append(f"{_where(doc, ('distill', 'student'))}distill.student: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))
    return spec


def _check_backbone(name: str) -> None:
    from ferray.training.models import check_backbone

    check_backbone(name)


def _where(doc: YamlDoc | None, loc: tuple) -> str:
    if doc is None:
        return ""
    line = doc.line_of(loc)
    return f"{doc.path}:{line}: " if line else f"{doc.path}: "


def resolve_path(path: str) -> tuple[Any, str | None]:
    """The pydantic field annotation at dotted ``path`` of TrainConfig, or an error text."""
    from pydantic import BaseModel

    from ferray._config import _model_of
    from ferray.errors import closest

    current: type[BaseModel] = TrainConfig
    parts = path.split(".")
    done: list[str] = []
    for i, part in enumerate(parts):
        fields = current.model_fields
        if part not in fields:
            options = [".".join(done + [f]) for f in fields]
            hint = closest(".".join(done + [part]), options)
            if not hint and not done:
                hint = "; valid sections: " + ", ".join(TrainConfig.model_fields)
            elif not hint:
                hint = f"; valid keys of {'.'.join(done)}: {', '.join(fields)}"
            return None, f"'{path}' is not a training-config field{hint}"
        done.append(part)
        annotation = fields[part].annotation
        sub = _model_of(annotation)
        if i < len(parts) - 1:
            if sub is None:
                return None, f"'{path}': '{'.'.join(done)}' is a value, not a section"
            current = sub
        elif sub is not None:
            return None, (f"'{path}' is a section; name one of its fields, e.g. {path}.{next(iter(sub.model_fields))}")
    return annotation, None


def _get(data: dict, path: str) -> Any:
    for part in path.split("."):
        data = data[part]
    return data


def _set(data: dict, path: str, value: Any) -> dict:
    """A copy of nested ``data`` with dotted ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    out = dict(data)
    out[head] = _set(out.get(head) or {}, rest, value) if rest else value
    return out


def check_space(spec: SearchSpec, doc: YamlDoc | None = None, *, check_backbones: bool = True) -> list[str]:
    """Problems of ``spec.space`` against the training config, one ``file:line: key: msg`` each."""
    errors: list[str] = []
    base = spec.base_dict()

    def err(loc: tuple, msg: str) -> None:
        errors.append(f"{_where(doc, loc)}{'.'.join(str(p) for p in loc)}: {msg}")

    for key, param in spec.space.items():
        loc = ("space", key)
        _, problem = resolve_path(key)
        if problem:
            err(loc, problem)
            continue
        fixed = next((why for p, why in _FIXED.items() if key == p or key.startswith(p + ".")), None)
        if fixed:
            err(loc, f"'{key}' cannot be searched: {fixed}")
            continue
        # Every value a trial can get must be one the training config accepts.
        if param.type == "categorical":
            candidates = [(("choices", i), v) for i, v in enumerate(param.choices)]
        else:
            cast = int if param.type == "int" else float
            candidates = [(("low",), cast(param.low)), (("high",), cast(param.high))]
        for sub, value in candidates:
            try:
                TrainConfig.model_validate(_set(base, key, value))
            except ValidationError as exc:
                msgs = "; ".join(e["msg"] for e in exc.errors())
                err(loc + sub, f"value {value!r} is rejected by the training config: {msgs}")
                continue
            if check_backbones and key == "model.backbone":
                try:
                    _check_backbone(str(value))
                except ConfigError as exc:
                    err(loc + sub, str(exc))
        for cond_path, allowed in param.when.items():
            cloc = loc + ("when", cond_path)
            values = allowed if isinstance(allowed, list) else [allowed]
            if cond_path == key:
                err(cloc, "a parameter cannot be conditioned on itself")
            elif cond_path in spec.space:
                other = spec.space[cond_path]
                if other.type == "float":
                    err(cloc, f"conditions can test categorical or int parameters; '{cond_path}' is a float")
                elif other.type == "categorical":
                    never = [v for v in values if not any(_same(v, c) for c in other.choices)]
                    if never:
                        err(
                            cloc,
                            f"{never} is not among the choices of '{cond_path}' {other.choices}; "
                            "the condition could never hold",
                        )
            else:
                _, problem = resolve_path(cond_path)
                if problem:
                    hint = ""
                    from ferray.errors import closest

                    hint = closest(cond_path, list(spec.space))
                    err(
                        cloc,
                        f"'{cond_path}' is neither a parameter of the space nor a training-config "
                        f"field{hint or (': ' + problem)}",
                    )
    if not errors:
        cycle = _find_cycle(spec.space)
        if cycle:
            err(("space", cycle[0], "when"), "conditions form a cycle: " + " -> ".join(cycle))
    return errors


def _same(a: Any, b: Any) -> bool:
    return (
        type(a) is type(b)
        and a == b
        or (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and not isinstance(a, bool)
            and not isinstance(b, bool)
            and a == b
        )
    )


def _find_cycle(space: dict[str, ParamSpec]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in space[node].when:
            if dep not in space:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep] if dep in stack else [node, dep, node]
            if dep not in state:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[node] = 2
        return None

    for name in space:
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None
