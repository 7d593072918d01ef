"""Pruned/failed bookkeeping between ASHA, Optuna and Tune, driven by hand (no Ray cluster)."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from ferray.search import ParamSpec, define_by_run
from ferray.search._optuna import PruneAwareOptunaSearch, PruningASHA

pytestmark = pytest.mark.filterwarnings("ignore")
SPACE = {"optim.lr": ParamSpec(type="float", low=1e-4, high=1e-1, log=True)}


def _searcher(scheduler):
    storage = optuna.storages.InMemoryStorage()
    s = PruneAwareOptunaSearch(define_by_run(SPACE), metric="metric", mode="max",
                               sampler=optuna.samplers.RandomSampler(seed=0), study_name="t", storage=storage,
                               scheduler=scheduler, max_epochs=3)
    return s, storage


def _result(epoch, metric, **extra):
    return {"epoch": epoch, "training_iteration": epoch, "metric": metric, **extra}


def test_asha_records_only_trials_it_stops_before_the_last_epoch():
    asha = PruningASHA(time_attr="epoch", metric="metric", mode="max", max_t=3, grace_period=1,
                       reduction_factor=2)
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    asha.on_trial_add(None, good)
    asha.on_trial_add(None, bad)
    assert asha.on_trial_result(None, good, _result(1, 0.9)) == "CONTINUE"
    assert asha.on_trial_result(None, bad, _result(1, 0.1)) == "STOP"
    asha.on_trial_result(None, good, _result(2, 0.9))
    assert asha.on_trial_result(None, good, _result(3, 0.95)) == "STOP"  # reached max_t: not pruned
    assert asha.pruned == {"bad"} and asha.pruned_at == {"bad": 1}


def test_optuna_is_told_pruned_complete_and_fail():
    scheduler = SimpleNamespace(pruned={"p"})
    searcher, storage = _searcher(scheduler)
    for tid in ("c", "p", "e"):
        assert "optim.lr" in searcher.suggest(tid)
    for epoch, value in ((1, 0.3), (2, 0.4)):
        searcher.on_trial_result("c", _result(epoch, value))
    searcher.on_trial_complete("c", _result(3, 0.5, done=True))
    # The result that made ASHA stop a trial reaches the searcher only via on_trial_complete.
    searcher.on_trial_complete("p", _result(1, 0.1, done=True))
    searcher.on_trial_result("e", _result(1, 0.2))
    searcher.on_trial_complete("e", error=True)

    study = optuna.load_study(study_name="t", storage=storage)
    by_number = {t.number: t for t in study.trials}
    c, p, e = (by_number[searcher.ot_number(t)] for t in ("c", "p", "e"))
    assert c.state == optuna.trial.TrialState.COMPLETE and c.value == 0.5
    assert c.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}
    assert p.state == optuna.trial.TrialState.PRUNED and p.intermediate_values == {1: 0.1}
    assert e.state == optuna.trial.TrialState.FAIL
    assert searcher.states == {"c": "COMPLETE", "p": "PRUNED", "e": "FAIL"}


def test_searcher_state_survives_tune_checkpointing(tmp_path):
    searcher, _ = _searcher(SimpleNamespace(pruned={"x"}))
    searcher.suggest("x")
    searcher.save(str(tmp_path / "s.pkl"))
    fresh, _ = _searcher(None)
    fresh.restore(str(tmp_path / "s.pkl"))
    assert fresh._pruned("x")
