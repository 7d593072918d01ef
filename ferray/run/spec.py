"""The typed spec of a run: a training config (the fixed base of every trial) plus a search.

A spec file has the :class:`~ferray.training.config.TrainConfig` sections (``data``,
``folds``, ``model``, ``loss``, ``augment``, ``optim``, ``run``, ``resources``) and:

* ``name``: the sweep's name (run directory, Optuna study name);
* ``space``: the parameters to search, each a dotted path into the trial config;
* ``budget``, ``search``, ``tracking``, ``ensemble``, ``distill``, ``retention``: the
  sections of :mod:`ferray.run.sections`.

Everything is checked by :func:`load_search_spec` before Ray starts; every error names the
file, line and key path. A sweep copies its spec to ``RUN/spec.yaml``; every stage after it
reads that copy with :func:`read_run_spec`.

>>> spec = SearchSpec.model_validate({"name": "demo", "space": {
...     "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})
>>> spec.budget.trials, spec.space["optim.lr"].log
(8, True)
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ferray._config import StrictModel, YamlDoc, _model_of, format_errors, load_yaml, validate_model
from ferray.errors import ConfigError, closest
from ferray.run.layout import RunLayout
from ferray.run.sections import (
    BudgetConfig,
    DistillConfig,
    EnsembleConfig,
    RetentionConfig,
    SearchConfig,
    TrackingConfig,
)
from ferray.training.config import TrainConfig

__all__ = [
    "ParamSpec",
    "SearchSpec",
    "load_search_spec",
    "read_run_spec",
    "check_space",
    "resolve_path",
    "get_path",
    "set_path",
    "same_value",
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
        """The fold-mean metric optimised (``search.metric`` or ``run.metric``; with several
        objectives, the first, a fold mean)."""
        if self.search.objectives:
            return self.search.objectives[0].metric
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


def read_run_spec(run_dir: str | os.PathLike) -> SearchSpec:
    """The spec a sweep's run directory was started with (``RUN/spec.yaml``), checked.

    Backbone names are not checked against timm (the run already trained them), so this
    works on a machine without torch.

    Raises:
        ConfigError: the file is missing or no longer a valid spec (file, line and key path).
    """
    return load_search_spec(RunLayout(run_dir).spec, check_backbones=False)


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


def get_path(data: dict, path: str) -> Any:
    """The value at dotted ``path`` of nested ``data``."""
    for part in path.split("."):
        data = data[part]
    return data


def set_path(data: dict, path: str, value: Any) -> dict:
    """A copy of nested ``data`` with dotted ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    out = dict(data)
    out[head] = set_path(out.get(head) or {}, rest, value) if rest else value
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
                TrainConfig.model_validate(set_path(base, key, value))
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
                    never = [v for v in values if not any(same_value(v, c) for c in other.choices)]
                    if never:
                        err(
                            cloc,
                            f"{never} is not among the choices of '{cond_path}' {other.choices}; "
                            "the condition could never hold",
                        )
            else:
                _, problem = resolve_path(cond_path)
                if problem:
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


def same_value(a: Any, b: Any) -> bool:
    """``a == b`` for spec values, where ``True`` is not ``1`` but ``1`` is ``1.0``."""
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
