from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from ferray.errors import ConfigError
from ferray.search import PACKAGED_SPECS, SearchSpec, load_search_spec, packaged_spec

REPO = Path(__file__).resolve().parents[2]


def test_valid_spec_resolves(write_spec):
    path = write_spec("""
        optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        loss.name: {type: categorical, choices: [ce, focal]}
        loss.focal_gamma: {type: float, low: 0.5, high: 3, when: {loss.name: [focal]}}
        run.batch_size: {type: int, low: 16, high: 64, step: 16}
    """)
    spec = load_search_spec(path)
    assert isinstance(spec, SearchSpec)
    assert spec.space["optim.lr"].log and spec.space["run.batch_size"].step == 16
    base = spec.base_config()
    assert base.run.epochs == 3 and base.model.backbone == "test_resnet"
    assert spec.mode == "max"


@pytest.mark.parametrize(
    "space, match",
    [
        (
            "optim.lr: {type: float, low: 1.0e-4, hgih: 1.0e-2}",
            r"spec.yaml:\d+: space\.optim\.lr\.hgih: unknown key; did you mean 'high'\?",
        ),
        (
            "optim.lr: {type: float, low: 0.1, high: 0.01}",
            r"spec.yaml:\d+: space\.optim\.lr: .*low = 0.1 must be < high = 0.01",
        ),
        (
            "optim.lr: {type: float, low: 0.0, high: 0.01, log: true}",
            r"space\.optim\.lr: .*log: true needs low > 0, but low = 0",
        ),
        (
            "run.batch_size: {type: int, low: 16, high: 60, step: 16}",
            r"space\.run\.batch_size: .*step = 16 does not divide",
        ),
        ("run.batch_size: {type: int, low: 16.5, high: 60}", r"low = 16.5 is not an integer"),
        ("loss.name: {type: categorical, choices: []}", r"space\.loss\.name: .*'choices' is empty"),
        ("loss.name: {type: categorical}", r"needs 'choices'"),
        ("loss.name: {type: categorical, choices: [ce, ce]}", r"duplicates"),
        ("optim.lr: {type: flaot, low: 0.1, high: 1}", r"space\.optim\.lr\.type: .*'float'"),
        (
            "optim.lrr: {type: float, low: 0.001, high: 0.01}",
            r"spec.yaml:\d+: space\.optim\.lrr: 'optim\.lrr' is not a training-config field; did you mean 'optim\.lr'",
        ),
        ("optim: {type: float, low: 0.001, high: 0.01}", r"'optim' is a section"),
        ("optim.lr.x: {type: float, low: 0.001, high: 0.01}", r"'optim\.lr' is a value, not a section"),
        ("folds.k: {type: int, low: 2, high: 5}", r"space\.folds\.k: 'folds\.k' cannot be searched"),
        ("run.epochs: {type: int, low: 2, high: 5}", r"budget\.max_epochs sets every trial's epochs"),
        (
            "loss.name: {type: categorical, choices: [ce, focall]}",
            r"space\.loss\.name\.choices\.1: value 'focall' is rejected by the training config",
        ),
        ("optim.lr: {type: float, low: 0.001, high: 20}", r"space\.optim\.lr\.high: value 20.0 is rejected"),
        (
            "model.backbone: {type: categorical, choices: [resnet10t, resnet18x]}",
            r"space\.model\.backbone\.choices\.1: unknown backbone 'resnet18x'; did you mean",
        ),
        (
            "loss.focal_gamma: {type: float, low: 0.5, high: 3, when: {loss.nmae: focal}}",
            r"space\.loss\.focal_gamma\.when\.loss\.nmae: "
            r"'loss\.nmae' is neither a parameter of the space nor a training-config field",
        ),
        (
            "loss.name: {type: categorical, choices: [ce]}\n"
            "loss.focal_gamma: {type: float, low: 0.5, high: 3, when: {loss.name: focal}}",
            r"\['focal'\] is not among the choices of 'loss\.name'",
        ),
        ("loss.focal_gamma: {type: float, low: 0.5, high: 3, when: {loss.focal_gamma: 1}}", r"conditioned on itself"),
        ("optim.lr: {type: float, low: 0.001, high: 0.01, choices: [1]}", r"'choices' does not apply to type float"),
    ],
)
def test_spec_errors_name_file_line_and_key(write_spec, space, match):
    with pytest.raises(ConfigError, match=match):
        load_search_spec(write_spec(space))


def test_unknown_top_level_and_budget_keys(write_spec):
    path = write_spec("optim.lr: {type: float, low: 0.001, high: 0.01}", extra="serach: {seed: 1}\n")
    with pytest.raises(ConfigError, match=r"spec.yaml:\d+: serach: unknown key; did you mean 'search'\?"):
        load_search_spec(path)
    path = write_spec(
        "optim.lr: {type: float, low: 0.001, high: 0.01}",
        base="name: t\nbudget: {trials: 2, max_epochs: 2, grace_period: 3, reduction_factor: 1}\n",
    )
    with pytest.raises(ConfigError, match=r"budget\.reduction_factor: .*greater than or equal to 2") as info:
        load_search_spec(path)
    assert "grace_period" not in str(info.value) or "max_epochs" in str(info.value)


def test_empty_space_and_unknown_base_backbone(write_spec, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nmodel: {backbone: resnet18}\n")
    with pytest.raises(ConfigError, match=r"space: the space is empty"):
        load_search_spec(path)
    path = write_spec("optim.lr: {type: float, low: 0.001, high: 0.01}", base="name: t\nmodel: {backbone: resnt18}\n")
    with pytest.raises(ConfigError, match=r"spec.yaml:2: model\.backbone: unknown backbone 'resnt18'"):
        load_search_spec(path)


def test_several_errors_reported_together(write_spec):
    path = write_spec("""
        optim.lr: {type: float, low: 1, high: 0.5}
        loss.name: {type: categorical, choices: []}
    """)
    with pytest.raises(ConfigError) as info:
        load_search_spec(path)
    assert "space.optim.lr" in str(info.value) and "space.loss.name" in str(info.value)


def test_condition_on_base_field_is_accepted(write_spec):
    spec = load_search_spec(write_spec("loss.focal_gamma: {type: float, low: 0.5, high: 3, when: {loss.name: ce}}"))
    assert spec.space["loss.focal_gamma"].when == {"loss.name": "ce"}


def test_condition_cycle_is_refused(write_spec):
    path = write_spec("""
        loss.name: {type: categorical, choices: [ce, focal], when: {optim.name: adamw}}
        optim.name: {type: categorical, choices: [adamw, sgd], when: {loss.name: ce}}
    """)
    with pytest.raises(ConfigError, match="cycle"):
        load_search_spec(path)


@pytest.mark.parametrize("name", PACKAGED_SPECS)
def test_shipped_specs_validate(name):
    spec = load_search_spec(REPO / "search_spaces" / f"{name}.yaml")
    assert spec.name and spec.space


@pytest.mark.parametrize("name", PACKAGED_SPECS)
def test_packaged_copies_match_search_spaces(name):
    assert filecmp.cmp(packaged_spec(name), REPO / "search_spaces" / f"{name}.yaml", shallow=False), (
        f"ferray/search/specs/{name}.yaml differs from search_spaces/{name}.yaml; copy it over"
    )


def test_unknown_packaged_spec():
    with pytest.raises(ConfigError, match="did you mean 'quickstart'"):
        packaged_spec("quickstrat")
