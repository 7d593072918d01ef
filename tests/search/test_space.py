from __future__ import annotations

import math

import optuna
import pytest

from ferray.search import ParamSpec, apply_params, define_by_run, is_active

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _sample(space, n=300, seed=0, base=None):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fn = define_by_run(space, base)
    out = []
    for _ in range(n):
        trial = study.ask()
        params = fn(trial)
        study.tell(trial, 0.0)
        out.append(params)
    return out


def test_ints_are_inclusive_of_both_ends():
    space = {"run.batch_size": ParamSpec(type="int", low=1, high=4)}
    values = {p["run.batch_size"] for p in _sample(space, 200)}
    assert values == {1, 2, 3, 4}
    assert all(isinstance(v, int) for v in values)


def test_int_step_hits_every_grid_point_including_high():
    space = {"run.batch_size": ParamSpec(type="int", low=16, high=64, step=16)}
    assert {p["run.batch_size"] for p in _sample(space, 200)} == {16, 32, 48, 64}


def test_log_int_within_bounds_and_reaches_ends():
    space = {"x": ParamSpec(type="int", low=1, high=8, log=True)}
    values = {p["x"] for p in _sample(space, 400)}
    assert min(values) == 1 and max(values) == 8


def test_log_floats_stay_in_bounds_and_spread_over_decades():
    space = {"optim.lr": ParamSpec(type="float", low=1e-5, high=1e-1, log=True)}
    values = [p["optim.lr"] for p in _sample(space, 500)]
    assert all(1e-5 <= v <= 1e-1 for v in values)
    decades = {math.floor(math.log10(v)) for v in values}
    assert decades >= {-5, -4, -3, -2}  # uniform in log space, not piled up near high


def test_float_step_grid():
    space = {"loss.focal_gamma": ParamSpec(type="float", low=0.5, high=2.0, step=0.5)}
    assert {p["loss.focal_gamma"] for p in _sample(space, 200)} == {0.5, 1.0, 1.5, 2.0}


def test_categorical_takes_every_choice():
    space = {"model.backbone": ParamSpec(type="categorical", choices=["a", "b", "c"])}
    assert {p["model.backbone"] for p in _sample(space, 100)} == {"a", "b", "c"}


def test_conditional_params_only_present_when_condition_holds():
    space = {
        "loss.focal_gamma": ParamSpec(type="float", low=0.5, high=3, when={"loss.name": ["focal"]}),
        "loss.name": ParamSpec(type="categorical", choices=["ce", "focal", "label_smoothing"]),
        "loss.label_smoothing": ParamSpec(type="float", low=0.0, high=0.3, when={"loss.name": "label_smoothing"}),
    }
    samples = _sample(space, 300)
    for p in samples:
        assert ("loss.focal_gamma" in p) == (p["loss.name"] == "focal")
        assert ("loss.label_smoothing" in p) == (p["loss.name"] == "label_smoothing")
    assert any("loss.focal_gamma" in p for p in samples)


def test_conditional_params_are_real_optuna_conditions():
    space = {
        "loss.name": ParamSpec(type="categorical", choices=["ce", "focal"]),
        "loss.focal_gamma": ParamSpec(type="float", low=0.5, high=3, when={"loss.name": "focal"}),
    }
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, n_startup_trials=3)
    )
    fn = define_by_run(space)
    for _ in range(20):
        trial = study.ask()
        params = fn(trial)
        study.tell(trial, 1.0 if params.get("loss.focal_gamma", 0) > 2 else 0.0)
    for t in study.trials:
        assert ("loss.focal_gamma" in t.params) == (t.params["loss.name"] == "focal")


def test_condition_on_base_config():
    space = {"loss.focal_gamma": ParamSpec(type="float", low=0.5, high=3, when={"loss.name": "focal"})}
    assert all("loss.focal_gamma" not in p for p in _sample(space, 10, base={"loss": {"name": "ce"}}))
    assert all("loss.focal_gamma" in p for p in _sample(space, 10, base={"loss": {"name": "focal"}}))


def test_seeded_sampling_is_reproducible():
    space = {"optim.lr": ParamSpec(type="float", low=1e-4, high=1e-1, log=True)}
    assert _sample(space, 20, seed=3) == _sample(space, 20, seed=3)


def test_is_active_inactive_parent_is_false():
    p = ParamSpec(type="float", low=0.1, high=1, when={"loss.name": "focal"})
    assert not is_active(p, {})
    assert is_active(p, {"loss.name": "focal"})


def test_apply_params_sets_dotted_paths_without_mutating_base():
    base = {"optim": {"lr": 0.1, "name": "adamw"}, "loss": {"name": "ce"}}
    out = apply_params(base, {"optim.lr": 0.01, "loss.focal_gamma": 2.0})
    assert out["optim"] == {"lr": 0.01, "name": "adamw"} and out["loss"]["focal_gamma"] == 2.0
    assert base["optim"]["lr"] == 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_spec_space_values_build_valid_configs(seed, write_spec):
    from ferray.search import load_search_spec
    from ferray.search._run import trial_config

    spec = load_search_spec(
        write_spec("""
        optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        loss.name: {type: categorical, choices: [ce, focal]}
        loss.focal_gamma: {type: float, low: 0.5, high: 3, when: {loss.name: focal}}
        run.batch_size: {type: int, low: 16, high: 64, step: 16}
    """)
    )
    for params in _sample(spec.space, 30, seed=seed, base=spec.base_dict()):
        cfg = trial_config(spec.base_dict(), params)
        assert cfg.optim.lr == params["optim.lr"] and cfg.loss.name == params["loss.name"]
