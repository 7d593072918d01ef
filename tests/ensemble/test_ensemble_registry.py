from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from ferray.ensemble import (
    ENSEMBLE_METHODS,
    EnsembleMethod,
    GreedyEnsemble,
    MeanEnsemble,
    StackingEnsemble,
    VoteEnsemble,
    make_ensemble,
    register_ensemble,
)
from ferray.errors import ConfigError
from ferray.run.sections import EnsembleConfig


def test_every_method_is_registered_by_the_name_a_spec_uses():
    assert list(ENSEMBLE_METHODS.items()) == [
        ("greedy", GreedyEnsemble),
        ("stacking", StackingEnsemble),
        ("mean", MeanEnsemble),
        ("vote", VoteEnsemble),
    ]
    # ... and the spec's ensemble.methods accepts exactly these names.
    assert EnsembleConfig(methods=list(ENSEMBLE_METHODS)).methods == list(ENSEMBLE_METHODS)


def test_make_ensemble_passes_settings():
    est = make_ensemble("greedy", iterations=3, seed=2)
    assert isinstance(est, GreedyEnsemble) and est.get_params()["iterations"] == 3


@pytest.mark.parametrize(
    "name, match",
    [
        (
            "gredy",
            r"unknown ensemble method 'gredy'; did you mean 'greedy'\?; valid methods: greedy, stacking, mean, vote",
        ),
        ("blend", r"unknown ensemble method 'blend'; valid methods: greedy, stacking, mean, vote"),
    ],
)
def test_unknown_method_lists_the_valid_names(name, match):
    with pytest.raises(ValueError, match=match):
        make_ensemble(name)


def test_unknown_setting_is_refused_not_dropped():
    with pytest.raises(
        ConfigError,
        match=r"'greedy' has no setting 'iteration'; did you mean 'iterations'\?; "
        r"its settings: bag_fraction, bags, iterations, max_cost, member_costs, metric, seed",
    ):
        make_ensemble("greedy", iteration=10)
    with pytest.raises(ConfigError, match=r"'mean' has no setting 'seed'.*its settings: none"):
        make_ensemble("mean", seed=0)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match=r"ensemble method 'mean' is already registered \(MeanEnsemble\)"):
        register_ensemble("mean")(MeanEnsemble)


def test_a_new_method_registers_and_builds(monkeypatch):
    monkeypatch.setattr("ferray.ensemble._registry.ENSEMBLE_METHODS", dict(ENSEMBLE_METHODS))

    @register_ensemble("first")
    class FirstMember(EnsembleMethod):
        def __init__(self, member: int = 0):
            self.member = member

        def fit(self, P, y):
            self._check_fit_input(P, y)
            return self

        def _combine(self, P):
            return P[self.member]

    est = make_ensemble("first", member=1)
    P = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert est.fit(P, [0]).predict(P).tolist() == [1]
    assert est.to_dict() == {"method": "first", "settings": {"member": 1}}
    assert "first" not in ENSEMBLE_METHODS  # the monkeypatched registry took it


@pytest.mark.parametrize("name", sorted(ENSEMBLE_METHODS))
def test_every_method_keeps_the_estimator_contract(members_data, name):
    P, y = members_data
    est = make_ensemble(name)
    before = est.get_params()
    assert est.fit(P, y) is est
    assert est.get_params() == before
    proba = est.predict_proba(P)
    assert proba.shape == (P.shape[1], P.shape[2])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert est.to_dict()["method"] == name
    assert not any(k.endswith("_") for k in vars(clone(est)))  # a clone is unfitted


def test_every_export_resolves():
    import ferray.ensemble as ens

    for name in ens.__all__:
        assert getattr(ens, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'Blend'"):
        ens.Blend  # noqa: B018
