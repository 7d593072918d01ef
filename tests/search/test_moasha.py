"""The multi-objective ASHA's promotion decisions and its state across a restart, driven by hand."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import optuna
import pytest

from ferray.search import ParamSpec, define_by_run
from ferray.search._moasha import MultiObjectiveASHA, milestones
from ferray.search._optuna import PruneAwareOptunaSearch, SchedulerState

pytestmark = pytest.mark.filterwarnings("ignore")
OBJECTIVES = [("val_accuracy_mean", "max"), ("latency_ms", "min")]


def _sched(**kwargs) -> MultiObjectiveASHA:
    return MultiObjectiveASHA(OBJECTIVES, **{"max_t": 8, "grace_period": 1, "reduction_factor": 2, **kwargs})


def _result(epoch, acc, ms, **extra):
    return {"epoch": epoch, "val_accuracy_mean": acc, "latency_ms": ms, "metric": acc, **extra}


def _on(s, tid, epoch, acc, ms, **extra) -> str:
    return s.on_trial_result(None, SimpleNamespace(trial_id=tid), _result(epoch, acc, ms, **extra))


def test_rungs_are_asha_milestones():
    assert milestones(1, 8, 2) == [8, 4, 2, 1]
    assert milestones(1, 10, 3) == [9, 3, 1]
    assert milestones(2, 3, 2) == [2]


def test_a_trade_off_is_promoted_where_one_score_would_stop_it():
    s = _sched()
    assert _on(s, "accurate", 1, 0.8, 10.0) == "CONTINUE"  # the first at a rung always continues
    assert _on(s, "slow", 1, 0.7, 11.0) == "STOP"  # dominated by "accurate"
    # Less accurate but faster: on the first front with "accurate", after it on accuracy (its tie-break):
    # 1 of 3 vectors ranks before it, < 3 / 2. ASHA on accuracy alone would stop it (0.5 < 0.75).
    assert _on(s, "fast", 1, 0.5, 1.0) == "CONTINUE"
    # Dominated (by "slow" too): the third front, 3 of 4 rank before it.
    assert _on(s, "worse", 1, 0.4, 12.0) == "STOP"
    assert s.pruned == {"slow", "worse"} and s.pruned_at == {"slow": 1, "worse": 1}
    assert s.recorded(1) == {
        "accurate": [0.8, 10.0],
        "slow": [0.7, 11.0],
        "fast": [0.5, 1.0],
        "worse": [0.4, 12.0],
    }


def test_within_the_first_front_crowding_then_the_first_objective_decides():
    s = _sched(reduction_factor=4)
    for tid, acc, ms in (("a", 0.9, 9.0), ("b", 0.5, 1.0), ("c", 0.7, 5.0)):
        _on(s, tid, 1, acc, ms)
    # 4 vectors, all on the first front, rf 4: continue only when none ranks before it. "d" lies
    # between b and c, so the extremes a and b (infinite crowding distance) rank before it.
    assert _on(s, "d", 1, 0.6, 3.0) == "STOP"
    # A new extreme (the most accurate) ties with the other extreme on crowding, and wins on accuracy.
    assert _on(s, "e", 1, 0.95, 20.0) == "CONTINUE"


def test_equal_vectors_share_a_decision():
    s = _sched()
    _on(s, "a", 1, 0.7, 5.0)
    assert _on(s, "b", 1, 0.7, 5.0) == "CONTINUE"
    assert _on(s, "c", 1, 0.7, 5.0) == "CONTINUE"


def test_nan_is_the_worst_value():
    s = _sched()
    _on(s, "a", 1, 0.5, 5.0)
    _on(s, "b", 1, 0.45, 6.0)
    assert _on(s, "nan", 1, float("nan"), 1.0) == "CONTINUE"  # faster than all: still on the first front
    assert _on(s, "nan2", 1, float("nan"), 6.0) == "STOP"  # dominated by b, which has an accuracy


def test_the_last_epoch_stops_without_pruning_and_later_rungs_rank_again():
    s = _sched(max_t=4, reduction_factor=2)
    for tid, acc, ms in (("a", 0.6, 5.0), ("b", 0.7, 4.0)):
        assert _on(s, tid, 1, acc, ms) == "CONTINUE"
    assert _on(s, "a", 2, 0.65, 5.0) == "CONTINUE"
    assert _on(s, "b", 2, 0.6, 6.0) == "STOP"  # rung 2: dominated by a's vector there
    assert _on(s, "a", 3, 0.7, 5.0) == "CONTINUE"  # between rungs
    assert _on(s, "a", 4, 0.75, 5.0) == "STOP"  # max_t: finished
    assert s.pruned == {"b"} and s.pruned_at == {"b": 2}


def test_own_early_stopping_is_not_pruning():
    s = _sched()
    _on(s, "a", 1, 0.9, 1.0)
    assert _on(s, "b", 1, 0.1, 9.0, stopped_early=True) == "STOP"
    assert s.pruned == set()


def test_results_without_every_objective_are_ignored():
    s = _sched()
    assert s.on_trial_result(None, SimpleNamespace(trial_id="a"), {"epoch": 1, "val_accuracy_mean": 0.5}) == "CONTINUE"
    assert s.recorded(1) == {}


def test_tune_config_metric_does_not_replace_the_objectives():
    s = _sched()
    assert s.set_search_properties("metric", "max") is True
    assert s.metric == "val_accuracy_mean"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(objectives=[]), "objectives is empty"),
        (dict(objectives=[("a", "up")]), r"mode of objective 'a' is 'up', but must be one of max, min"),
        (dict(objectives=OBJECTIVES, max_t=2, grace_period=3), "grace_period is 3, but must be >= 1 and <= max_t = 2"),
        (dict(objectives=OBJECTIVES, max_t=8, reduction_factor=1), "reduction_factor is 1, but must be >= 2"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiObjectiveASHA(**{"max_t": 8, **kwargs})


EVENTS = [
    ("a", 1, 0.5, 5.0),
    ("b", 1, 0.4, 6.0),
    ("a", 2, 0.6, 5.0),
    ("c", 1, 0.45, 2.0),
    ("b", 2, 0.3, 6.0),
    ("d", 1, 0.3, 7.0),
    ("e", 1, 0.35, 6.5),
    ("a", 4, 0.7, 5.0),
    ("c", 2, 0.5, 2.0),
    ("c", 4, 0.4, 2.0),
    ("f", 1, 0.42, 6.2),
]


def _replay(s, events):
    return [_on(s, *event) for event in events]


def test_rungs_survive_a_restart_and_decide_as_an_uninterrupted_run(tmp_path):
    whole = _sched()
    expected = _replay(whole, EVENTS)
    assert "STOP" in expected

    first = _sched()
    got = _replay(first, EVENTS[:6])
    # The state goes through Tune's callback checkpoint (pickled) and back.
    saved = tmp_path / "state.pkl"
    saved.write_bytes(pickle.dumps(SchedulerState(first).get_state()))
    resumed = _sched()  # what Tune rebuilds from its pickle: empty rungs
    SchedulerState(resumed).set_state(pickle.loads(saved.read_bytes()))
    got += _replay(resumed, EVENTS[6:])
    assert got == expected
    assert resumed.state_dict() == whole.state_dict()

    fresh = _sched()  # without the saved rungs the same results decide differently
    assert _replay(fresh, EVENTS[6:]) != expected[6:]


def test_state_of_other_objectives_or_milestones_is_refused():
    state = _sched().state_dict()
    with pytest.raises(ValueError, match="ranked objectives"):
        MultiObjectiveASHA(
            [("val_accuracy_mean", "max"), ("params", "min")], max_t=8, reduction_factor=2
        ).load_state_dict(state)
    with pytest.raises(ValueError, match="milestones"):
        _sched(grace_period=2).load_state_dict(state)


SPACE = {"optim.lr": ParamSpec(type="float", low=1e-4, high=1e-1, log=True)}


def _mo_searcher(path, scheduler):
    return PruneAwareOptunaSearch(
        define_by_run(SPACE),
        metric=["val_accuracy_mean", "latency_ms"],
        mode=["max", "min"],
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=1),
        study_name="t",
        storage=optuna.storages.RDBStorage(f"sqlite:///{path}"),
        scheduler=scheduler,
        max_epochs=3,
        seed=0,
    )


def test_a_multi_objective_study_is_told_vectors_and_pruned_trials(tmp_path):
    scheduler = MultiObjectiveASHA(OBJECTIVES, max_t=3, reduction_factor=2)
    searcher = _mo_searcher(tmp_path / "optuna.db", scheduler)
    for tid in ("c", "p", "e", "n"):
        searcher.suggest(tid)
    assert _on(scheduler, "c", 1, 0.6, 2.0) == "CONTINUE"
    searcher.on_trial_result("c", _result(1, 0.6, 2.0))
    searcher.on_trial_result("c", _result(2, 0.7, 2.0))
    searcher.on_trial_complete("c", _result(3, 0.8, 2.5, final=True))
    assert _on(scheduler, "p", 1, 0.5, 3.0) == "STOP"
    searcher.on_trial_complete("p", _result(1, 0.5, 3.0))
    searcher.on_trial_complete("e", error=True)
    searcher.on_trial_complete("n", _result(3, float("nan"), 2.0, final=True))

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    by_number = {t.number: t for t in study.trials}
    c, p, e, n = (by_number[searcher.ot_number(t)] for t in ("c", "p", "e", "n"))
    assert c.state.name == "COMPLETE" and c.values == [0.8, 2.5]
    assert p.state.name == "PRUNED" and e.state.name == "FAIL" and n.state.name == "FAIL"
    assert searcher.states == {"c": "COMPLETE", "p": "PRUNED", "e": "FAIL", "n": "FAIL"}
    assert [t.number for t in study.best_trials] == [c.number]

    # A restored searcher keeps the study, its directions and what it was told.
    searcher.save(str(tmp_path / "searcher.pkl"))
    again = _mo_searcher(tmp_path / "optuna.db", scheduler)
    again.restore(str(tmp_path / "searcher.pkl"))
    assert again.multi_objective and again.ot_number("c") == c.number
    assert again.states["c"] == "COMPLETE"
    assert "optim.lr" in again.suggest("next")
