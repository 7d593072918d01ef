"""Every registered ensemble method, exported and run: the graph and ``ferray.predict`` agree with PyTorch.

Three tiny ``test_resnet`` trials (the first with two folds) are combined by each method of
:data:`ferray.ensemble.ENSEMBLE_METHODS`, fitted on the members' fold-mean probabilities and
handed to :func:`ferray.export.export_run` through ``ensemble.json`` as ``ferray ensemble``
writes it. The bundle's ``ensemble.onnx`` (onnxruntime) and :func:`ferray.predict.predict`
are compared with the same ensemble computed without the graph: each member the mean of its
fold models' softmax (training's evaluation path), combined by the fitted estimator's
``predict_proba``. A method registered without an exporter fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from _export_helpers import CLASSES, SIZE, make_trial, torch_member_probs

from ferray.ensemble import ENSEMBLE_METHODS, make_ensemble
from ferray.export import export_run
from ferray.predict import Bundle, predict
from ferray.run.layout import RunLayout

TOL = 1e-4
N_MEMBERS = 3
# A member's vote, or a tied vote's tie-break, closer than this could flip between the
# graph's float32 and the reference: test rows are chosen clear of such knife edges.
_MARGIN = 1e-2


def varied_images(n: int, seed: int) -> np.ndarray:
    """``uint8 (n, SIZE, SIZE, 1)`` smooth random patterns of random brightness and contrast.

    Uniform noise images all look alike to a random network (every member votes one class
    for all of them); these make the members disagree, so votes split and tie.
    """
    rng = np.random.default_rng(seed)
    cells = SIZE // 8
    pattern = np.kron(rng.random((n, cells, cells)), np.ones((8, 8))) - 0.5
    level, contrast = rng.random((n, 1, 1)), rng.random((n, 1, 1))
    noise = 0.1 * rng.standard_normal((n, SIZE, SIZE))
    return (255 * np.clip(level + contrast * pattern + noise, 0, 1)).astype(np.uint8)[..., None]


class Members:
    """Three trials in a run folder, their fit rows and the test rows, each method exported once."""

    def __init__(self, root: Path) -> None:
        self.run = RunLayout(root / "exp")
        self.ids = [f"t{i:05d}" for i in range(1, N_MEMBERS + 1)]
        self.trials = [
            make_trial(self.run.root / tid, "test_resnet", k=k, seed=60 + i)
            for i, (tid, k) in enumerate(zip(self.ids, (2, 1, 1)), start=1)
        ]
        # Fit rows, stand-ins for the out-of-fold rows, labelled by a draw from the members'
        # mean probability: labels the members explain together, so greedy selection keeps
        # all three (on random labels it drops one, and the graph would combine two).
        self.P_fit = self.member_probs(varied_images(80, seed=31))
        draw = np.random.default_rng(0).random((self.P_fit.shape[1], 1))
        self.y_fit = (self.P_fit.mean(axis=0).cumsum(axis=1) > draw).argmax(axis=1)
        # stacking's stratified inner folds need five rows of each class
        assert np.bincount(self.y_fit, minlength=len(CLASSES)).min() >= 5, "the seeds no longer label every class"
        pool = varied_images(96, seed=32)
        P = self.member_probs(pool)
        winners, mean = P.argmax(axis=2), P.mean(axis=0)  # (members, rows), (rows, classes)
        top2 = np.sort(P, axis=2)[:, :, -2:]
        clear = (top2[:, :, 1] - top2[:, :, 0] > _MARGIN).all(axis=0)
        tied = np.array([len(set(w)) == N_MEMBERS for w in winners.T])  # three members, three classes
        tie_gap = np.array([np.diff(np.sort(mean[r, w])[-2:])[0] for r, w in enumerate(winners.T)])
        tie_winner = np.array([w[np.argmax(mean[r, w])] for r, w in enumerate(winners.T)])
        majority = np.array([np.bincount(w).argmax() for w in winners.T])
        # Tied rows whose tie goes to a class above the lowest tied one: the first index of
        # equal vote shares would be wrong there.
        tie_rows = np.flatnonzero(clear & tied & (tie_gap > _MARGIN) & (tie_winner != winners.min(axis=0)))[:4]
        # Rows where a majority of two outvotes the class of highest mean probability.
        overruled = np.flatnonzero(clear & ~tied & (majority != mean.argmax(axis=1)))[:3]
        others = np.setdiff1d(np.flatnonzero(clear & ~tied), overruled)[: 8 - len(overruled)]
        assert len(tie_rows) == 4 and len(overruled) >= 1 and len(others) + len(overruled) == 8, (
            "the seeds no longer give tied, overruled and plain test rows"
        )
        rows = np.concatenate([tie_rows, overruled, others])
        self.images, self.P = pool[rows], P[:, rows]
        self.tied = np.isin(rows, tie_rows)
        self.overruled = np.isin(rows, overruled)
        self._cache: dict[str, tuple] = {}

    def member_probs(self, images: np.ndarray) -> np.ndarray:
        """``(n_members, n_rows, n_classes)``: each member's mean fold softmax, in PyTorch."""
        return np.stack([torch_member_probs(t, images) for t in self.trials])

    def exported(self, method: str) -> tuple:
        """``(fitted estimator, bundle folder)`` of ``method``, exported from ``ensemble.json``."""
        if method not in self._cache:
            est = make_ensemble(method).fit(self.P_fit, self.y_fit)
            self.run.ensemble.mkdir(parents=True, exist_ok=True)
            summary = {
                "chosen": method,
                "members": [{"trial_id": t} for t in self.ids],
                "methods": {method: est.to_dict()},
            }
            self.run.ensemble_files.summary.write_text(json.dumps(summary, default=_json_default))
            bundle = export_run(self.run.root, self.run.root / f"bundle-{method}")
            self._cache[method] = (est, bundle)
        return self._cache[method]


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{obj!r} is not JSON-able")


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> Members:
    return Members(tmp_path_factory.mktemp("methods"))


@pytest.fixture(scope="module", params=list(ENSEMBLE_METHODS))
def exported(request, members) -> tuple:
    return (request.param, *members.exported(request.param))


def _graph(bundle: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(bundle / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    probs, member_probs = session.run(["probs", "member_probs"], {"images": images})
    return probs, member_probs


def test_the_registry_is_covered():
    assert {"greedy", "stacking", "mean", "vote"} <= set(ENSEMBLE_METHODS)


def test_the_graph_agrees_with_pytorch(exported, members):
    method, est, bundle = exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["ensemble"]["method"] == method
    assert [m["name"] for m in manifest["ensemble"]["members"]] == members.ids  # none pruned: three combined
    probs, member_probs = _graph(bundle, members.images)
    assert member_probs.shape == (len(members.images), N_MEMBERS, len(CLASSES))
    assert np.abs(member_probs.transpose(1, 0, 2) - members.P).max() <= TOL
    expected = est.predict_proba(members.P)
    if method != "mean":  # the method changes the answer, so a graph that fell back to the mean fails
        assert np.abs(expected - members.P.mean(axis=0)).max() > 1e-2
    diff = float(np.abs(probs - expected).max())
    assert diff <= TOL, f"{method}: max |onnxruntime - pytorch| = {diff:.3g}"
    assert probs.argmax(axis=1).tolist() == est.predict(members.P).tolist()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_agrees_with_pytorch(exported, members):
    method, est, bundle = exported
    loaded = Bundle.load(bundle, verify_weights=True)
    assert loaded.method == method and loaded.temperature() == 1.0  # no out-of-fold rows: raw probabilities
    preds = predict(loaded, members.images, progress=False)
    assert [p.source for p in preds] == [f"array[{i}]" for i in range(len(members.images))] and not preds.skipped
    expected = est.predict_proba(members.P)
    diff = float(np.abs(preds.probs() - expected).max())
    assert diff <= TOL, f"{method}: max |ferray.predict - pytorch| = {diff:.3g}"
    assert [p.label for p in preds] == [CLASSES[i] for i in est.predict(members.P)]


def test_vote_counts_and_breaks_ties_through_the_graph(members):
    """Majority of the members' argmax; a tied vote goes to the tied class of highest mean probability."""
    _, bundle = members.exported("vote")
    P = members.P
    winners = P.argmax(axis=2)  # (members, rows)
    votes = np.zeros(P.shape[1:])
    for w in winners:
        votes[np.arange(len(w)), w] += 1
    mean = P.mean(axis=0)
    expected = [int(max(np.flatnonzero(v == v.max()), key=lambda c: mean[r, c])) for r, v in enumerate(votes)]
    assert members.tied.sum() >= 2 and (votes[members.tied].max(axis=1) == 1).all()  # 1-1-1: real ties
    assert (np.asarray(expected)[members.overruled] != mean[members.overruled].argmax(axis=1)).all()
    probs, _ = _graph(bundle, members.images)
    assert probs.argmax(axis=1).tolist() == expected
    # The shares are the votes, nudged by 1e-3 of the mean probability only.
    np.testing.assert_allclose(probs, votes / N_MEMBERS, atol=1.5e-3)
    preds = predict(bundle, members.images, progress=False)
    assert [p.label for p in preds] == [CLASSES[c] for c in expected]
