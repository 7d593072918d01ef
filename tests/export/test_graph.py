"""The ensemble combiners and the in-graph preprocessing, in PyTorch (no ONNX export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferray import ensemble
from ferray.errors import ConfigError
from ferray.export import COMBINERS, build_combiner
from ferray.export._graph import Preprocess


def _member_probs(n_members=3, n_rows=40, n_classes=4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_members, n_rows, n_classes)) * 2
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _combine(module, P: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.tensor(P.transpose(1, 0, 2), dtype=torch.float32)).numpy()


def test_registry_names():
    assert list(COMBINERS) == ["mean", "greedy", "vote", "stacking"]


def test_unknown_method_lists_valid_ones():
    with pytest.raises(
        ConfigError,
        match=r"unknown ensemble method 'greddy'; did you mean 'greedy'\?.*"
        r"valid methods: mean, greedy, vote, stacking",
    ):
        build_combiner("greddy", n_members=2, n_classes=3, weights=[1, 1])


@pytest.mark.parametrize(
    "weights, match",
    [
        (None, "method 'greedy' needs the members' weights"),
        ([1.0], r"1 weight\(s\) for 2 member\(s\)"),
        ([1.0, -0.5], "must be finite, >= 0 and not all 0"),
        ([0.0, 0.0], "must be finite, >= 0 and not all 0"),
    ],
)
def test_greedy_weights_are_checked(weights, match):
    with pytest.raises(ConfigError, match=match):
        build_combiner("greedy", n_members=2, n_classes=3, weights=weights)


def test_mean_refuses_unequal_weights():
    with pytest.raises(ConfigError, match="use 'greedy'"):
        build_combiner("mean", n_members=2, n_classes=3, weights=[0.9, 0.1])
    build_combiner("mean", n_members=2, n_classes=3, weights=[0.5, 0.5])  # ferray.ensemble's uniform weights_


def test_greedy_is_normalised_weighted_mean():
    P = _member_probs()
    out = _combine(build_combiner("greedy", n_members=3, n_classes=4, weights=[2, 1, 1]), P)
    np.testing.assert_allclose(out, np.tensordot([0.5, 0.25, 0.25], P, axes=1), atol=1e-6)


def test_matches_ferray_ensemble_estimators():
    P = _member_probs(n_rows=80)
    y = np.random.default_rng(1).integers(0, 4, 80)
    y[:4] = np.arange(4)
    for name in ("mean", "greedy", "vote"):
        est = ensemble.make_ensemble(name).fit(P, y)
        learned = est.to_dict()
        module = build_combiner(name, n_members=3, n_classes=4, weights=learned.get("weights"))
        np.testing.assert_allclose(_combine(module, P), est.predict_proba(P), atol=2e-6, err_msg=name)
    stack = ensemble.StackingEnsemble(inner_folds=2).fit(P, y)
    for stacker in (stack, stack.to_dict()):
        module = build_combiner("stacking", n_members=3, n_classes=4, stacker=stacker)
        np.testing.assert_allclose(_combine(module, P), stack.predict_proba(P), atol=1e-5)


def test_vote_ties_match_ferray_ensemble():
    # Two members disagree (1 vote each for classes 0 and 2); a member's own tie goes to the lower class.
    P = np.array([[[0.5, 0.1, 0.4], [0.4, 0.4, 0.2]], [[0.1, 0.3, 0.6], [0.2, 0.4, 0.4]]])
    est = ensemble.VoteEnsemble().fit(P, [0, 1])
    out = _combine(build_combiner("vote", n_members=2, n_classes=3), P)
    np.testing.assert_allclose(out, est.predict_proba(P), atol=1e-6)
    assert out.argmax(1).tolist() == est.predict(P).tolist()


def test_stacking_formula_and_checks():
    P = _member_probs(n_members=2, n_classes=3)
    rng = np.random.default_rng(0)
    coef, intercept = rng.normal(size=(3, 6)), rng.normal(size=3)
    module = build_combiner(
        "stacking", n_members=2, n_classes=3, stacker={"coef": coef, "intercept": intercept, "input": "log_proba"}
    )
    X = np.log(np.clip(P, 1e-7, 1)).transpose(1, 0, 2).reshape(P.shape[1], -1)
    z = X @ coef.T + intercept
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(_combine(module, P), expected, atol=1e-5)
    with pytest.raises(ConfigError, match=r"coef has shape \(3, 4\), but 2 member\(s\) x 3 classes need \(3, 6\)"):
        build_combiner("stacking", n_members=2, n_classes=3, stacker={"coef": coef[:, :4], "intercept": intercept})
    with pytest.raises(ConfigError, match="needs a stacker"):
        build_combiner("stacking", n_members=2, n_classes=3)
    with pytest.raises(ConfigError, match="stacker input 'logits'"):
        build_combiner(
            "stacking", n_members=2, n_classes=3, stacker={"coef": coef, "intercept": intercept, "input": "logits"}
        )


@pytest.mark.parametrize("channels", [1, 3])
def test_preprocess_equals_eval_transform(channels):
    from ferray.training.augment import apply_batch, build_eval_transform

    images = np.random.default_rng(0).integers(0, 256, (3, 20, 20, channels), dtype=np.uint8)
    with torch.no_grad():
        ours = Preprocess(0.5, 0.5, channels=channels)(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(ours, apply_batch(build_eval_transform(20, channels), images))
