"""The one place a search space becomes Optuna: a define-by-run function.

Bounds are inclusive on both ends (Optuna's ``suggest_int``/``suggest_float`` semantics);
a conditional parameter is suggested only when its ``when`` holds, so Optuna's TPE sees a
real conditional space (not a dead dimension that still gets sampled).

>>> import optuna
>>> from ferray.run.spec import ParamSpec
>>> space = {"loss.name": ParamSpec(type="categorical", choices=["ce", "focal"]),
...          "loss.focal_gamma": ParamSpec(type="float", low=0.5, high=3, when={"loss.name": "focal"})}
>>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
>>> params = define_by_run(space)(study.ask())
>>> ("loss.focal_gamma" in params) == (params["loss.name"] == "focal")
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferray.run.spec import ParamSpec, get_path, same_value, set_path

__all__ = ["define_by_run", "suggest", "distribution", "is_active", "ordered", "apply_params"]


def ordered(space: Mapping[str, ParamSpec]) -> list[str]:
    """Parameter names with every condition's parameter before the parameters it gates."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in space[name].when:
            if dep in space:
                visit(dep)
        out.append(name)

    for name in space:
        visit(name)
    return out


def is_active(param: ParamSpec, values: Mapping[str, Any], base: Mapping | None = None) -> bool:
    """Whether every condition of ``param`` holds given sampled ``values`` (dotted paths).

    A condition on a path that is not among ``values`` reads the ``base`` config; a condition
    on an inactive (unsampled) parameter is false.
    """
    for path, allowed in param.when.items():
        options = allowed if isinstance(allowed, list) else [allowed]
        if path in values:
            current = values[path]
        elif base is not None:
            try:
                current = get_path(dict(base), path)
            except (KeyError, TypeError):
                return False
        else:
            return False
        if not any(same_value(current, option) for option in options):
            return False
    return True


def suggest(trial: Any, name: str, param: ParamSpec) -> Any:
    """Ask an Optuna ``trial`` for ``name`` (inclusive bounds; ints stay ints)."""
    if param.type == "categorical":
        return trial.suggest_categorical(name, list(param.choices))
    if param.type == "int":
        return trial.suggest_int(
            name, int(param.low), int(param.high), step=int(param.step) if param.step else 1, log=param.log
        )
    return trial.suggest_float(name, float(param.low), float(param.high), step=param.step, log=param.log)


def distribution(param: ParamSpec):
    """The Optuna distribution :func:`suggest` asks for ``param`` (to add trials made elsewhere to a study)."""
    import optuna

    if param.type == "categorical":
        return optuna.distributions.CategoricalDistribution(list(param.choices))
    if param.type == "int":
        step = int(param.step) if param.step else 1
        return optuna.distributions.IntDistribution(int(param.low), int(param.high), log=param.log, step=step)
    return optuna.distributions.FloatDistribution(float(param.low), float(param.high), log=param.log, step=param.step)


class define_by_run:  # noqa: N801 - used like a function; a class so Tune can pickle its searcher
    """A function ``trial -> {dotted path: value}`` for Optuna (or Ray's ``OptunaSearch``).

    Only parameters whose conditions hold are suggested and returned; ``base`` answers
    conditions on fields that are not searched.
    """

    def __init__(self, space: Mapping[str, ParamSpec], base: Mapping | None = None) -> None:
        self.space = dict(space)
        self.base = base
        self.order = ordered(self.space)

    def __call__(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.order:
            if is_active(self.space[name], values, self.base):
                values[name] = suggest(trial, name, self.space[name])
        return values


def apply_params(base: dict, params: Mapping[str, Any]) -> dict:
    """A copy of the nested ``base`` config with each dotted path of ``params`` set."""
    out = base
    for path, value in params.items():
        out = set_path(out, path, value)
    return out
