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
    s = PruneAwareOptunaSearch(
        define_by_run(SPACE),
        metric="metric",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="t",
        storage=storage,
        scheduler=scheduler,
        max_epochs=3,
    )
    return s, storage


def _result(epoch, metric, **extra):
    return {"epoch": epoch, "training_iteration": epoch, "metric": metric, **extra}


def test_asha_records_only_trials_it_stops_before_the_last_epoch():
    asha = PruningASHA(time_attr="epoch", metric="metric", mode="max", max_t=3, grace_period=1, reduction_factor=2)
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


def _sqlite_searcher(path, scheduler=None, seed=None):
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    return PruneAwareOptunaSearch(
        define_by_run(SPACE),
        metric="metric",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=1),
        study_name="t",
        storage=storage,
        scheduler=scheduler,
        max_epochs=3,
        seed=seed,
    )


def test_restored_searcher_hands_out_optuna_trials_tune_never_recorded(tmp_path):
    # Tune checkpoints the searcher now and then; a trial asked for after the last checkpoint
    # is in the study (RUNNING) but unknown to the restored experiment.
    db = tmp_path / "optuna.db"
    before = _sqlite_searcher(db)
    first = before.suggest("a")
    before.save(str(tmp_path / "s.pkl"))
    orphan = before.suggest("b")  # then the driver dies
    after = _sqlite_searcher(db)
    after.restore(str(tmp_path / "s.pkl"))
    assert after.suggest("c") == orphan  # the new Tune trial takes the orphan's parameters
    after.on_trial_result("a", _result(1, 0.3))
    after.on_trial_complete("a", _result(3, 0.5))
    after.on_trial_complete("c", _result(3, 0.6))
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    assert {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials} == {"a": "COMPLETE", "c": "COMPLETE"}
    assert [t.params for t in study.trials] == [first, orphan]


def test_a_trial_killed_during_its_start_up_continues_under_its_own_id_and_optuna_trial(tmp_path):
    # The ghost: Tune never recorded trial "b" (killed during its start-up, after Optuna's ask).
    db = tmp_path / "optuna.db"
    before = _sqlite_searcher(db)
    before.suggest("a")
    before.save(str(tmp_path / "s.pkl"))
    ghost = before.suggest("b")
    number = before.ot_number("b")
    after = _sqlite_searcher(db)
    after.restore(str(tmp_path / "s.pkl"))
    assert after.reserve("b") and after.reserved_ids() == ["b"]
    assert not after.reserve("never-started")
    assert after.suggest("b") == ghost and after.ot_number("b") == number
    assert after.reserved_ids() == []
    after.on_trial_complete("a", _result(3, 0.5))
    after.on_trial_complete("b", _result(3, 0.6))
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    assert {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials} == {"a": "COMPLETE", "b": "COMPLETE"}


def test_a_tune_trial_the_restored_searcher_never_saw_keeps_its_own_optuna_trial(tmp_path):
    # Tune writes its trial list before the searcher's state: a kill between the two.
    db = tmp_path / "optuna.db"
    before = _sqlite_searcher(db)
    before.save(str(tmp_path / "s.pkl"))
    before.suggest("a")
    after = _sqlite_searcher(db)
    after.restore(str(tmp_path / "s.pkl"))
    after.adopt({"a"})
    assert after.ot_number("a") == before.ot_number("a")
    after.suggest("c")
    assert after.ot_number("c") != after.ot_number("a")  # "a"'s trial is not handed to another Tune trial
    after.on_trial_complete("a", _result(3, 0.5))
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    assert {t.user_attrs["tune_trial_id"]: t.state.name for t in study.trials} == {"a": "COMPLETE", "c": "RUNNING"}


def test_a_restored_searcher_takes_reports_and_ends_from_the_study(tmp_path, recwarn):
    # The saved state predates epoch reports and the trial's end that the study recorded.
    db = tmp_path / "optuna.db"
    before = _sqlite_searcher(db)
    before.suggest("a")
    before.suggest("b")
    before.save(str(tmp_path / "s.pkl"))
    before.on_trial_result("a", _result(1, 0.3))
    before.on_trial_complete("a", _result(3, 0.5))
    before.on_trial_result("b", _result(1, 0.2))
    after = _sqlite_searcher(db)
    after.restore(str(tmp_path / "s.pkl"))
    after.on_trial_result("a", _result(3, 0.5))  # Tune replays the ended trial
    after.on_trial_complete("a", _result(3, 0.5))
    after.on_trial_result("b", _result(1, 0.25))  # b's epoch 1, recomputed
    after.on_trial_result("b", _result(2, 0.3))
    assert not [w for w in recwarn if "optuna" in str(w.filename) or "reported" in str(w.message)]
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    a, b = study.trials
    assert a.state.name == "COMPLETE" and a.value == 0.5 and after.states["a"] == "COMPLETE"
    assert b.intermediate_values == {1: 0.2, 2: 0.3}


def test_optuna_trials_no_tune_trial_took_are_closed(tmp_path):
    db = tmp_path / "optuna.db"
    before = _sqlite_searcher(db)
    before.save(str(tmp_path / "s.pkl"))
    before.suggest("x")
    before.suggest("y")
    after = _sqlite_searcher(db)
    after.restore(str(tmp_path / "s.pkl"))
    assert after.reserve("y")
    assert after.close_orphans("test") == 2
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all(t.user_attrs["closed"] == "test" for t in study.trials)


def test_a_seeded_searcher_samples_each_trial_as_an_uninterrupted_one_whatever_state_it_restored(tmp_path):
    straight = _sqlite_searcher(tmp_path / "straight.db", seed=7)
    expected = [straight.suggest(t) for t in ("a", "b", "c")]
    before = _sqlite_searcher(tmp_path / "killed.db", seed=7)
    before.save(str(tmp_path / "s.pkl"))  # the last state Tune saved
    assert before.suggest("a") == expected[0]
    after = _sqlite_searcher(tmp_path / "killed.db", seed=7)
    after.restore(str(tmp_path / "s.pkl"))
    after.adopt({"a"})
    assert [after.suggest(t) for t in ("b", "c")] == expected[1:]


def test_an_orphan_killed_before_its_parameters_were_drawn_draws_what_the_uninterrupted_sweep_drew(tmp_path):
    # A kill just after a trial ended: Tune asked for the next trial, Optuna's ask wrote it
    # to the study, and the process died before its parameters were sampled.
    straight = _sqlite_searcher(tmp_path / "straight.db", seed=7)
    expected = [straight.suggest(t) for t in ("a", "b", "c")]
    before = _sqlite_searcher(tmp_path / "killed.db", seed=7)
    assert [before.suggest(t) for t in ("a", "b")] == expected[:2]
    before.save(str(tmp_path / "s.pkl"))  # the sampler's generator, two draws in
    before._ot_study.ask()  # trial 2 in the study, no parameters yet
    after = _sqlite_searcher(tmp_path / "killed.db", seed=7)
    after.restore(str(tmp_path / "s.pkl"))
    after.adopt({"a", "b"})
    assert after.suggest("d") == expected[2]
    assert after.ot_number("d") == 2
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'killed.db'}")
    assert len(study.trials) == 3


def test_recomputed_epochs_after_a_resume_keep_their_first_value(tmp_path):
    searcher = _sqlite_searcher(tmp_path / "optuna.db")
    searcher.suggest("a")
    searcher.on_trial_result("a", _result(1, 0.3))
    searcher.on_trial_result("a", {"epoch": 1, "training_iteration": 1, "metric": 0.31})  # epoch 1 again
    searcher.on_trial_result("a", {"epoch": 2, "training_iteration": 1, "metric": 0.4})  # Tune's count restarted
    searcher.on_trial_complete("a", {"epoch": 3, "training_iteration": 2, "metric": 0.5})
    (trial,) = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials
    assert trial.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}


def _replay(asha, events):
    return [asha.on_trial_result(None, SimpleNamespace(trial_id=t), _result(e, m)) for t, e, m in events]


def test_asha_rungs_survive_a_restart_and_decide_as_an_uninterrupted_run():
    kwargs = dict(time_attr="epoch", metric="metric", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    trials = ["a", "b", "c", "d", "e"]
    events = [
        ("a", 1, 0.5),
        ("b", 1, 0.4),
        ("a", 2, 0.6),
        ("c", 1, 0.45),
        ("b", 2, 0.3),
        ("d", 1, 0.2),
        ("e", 1, 0.1),
        ("a", 4, 0.7),
        ("c", 2, 0.5),
        ("c", 4, 0.65),
    ]
    whole = PruningASHA(**kwargs)
    for t in trials:
        whole.on_trial_add(None, SimpleNamespace(trial_id=t))
    expected = _replay(whole, events)
    assert "STOP" in expected

    first = PruningASHA(**kwargs)
    for t in trials:
        first.on_trial_add(None, SimpleNamespace(trial_id=t))
    got = _replay(first, events[:6])
    state = first.state_dict()
    resumed = PruningASHA(**kwargs)  # what Tune rebuilds from its pickle: empty rungs
    resumed.load_state_dict(state)
    for t in trials:
        resumed.on_trial_add(None, SimpleNamespace(trial_id=t))  # Tune re-adds restored trials
    got += _replay(resumed, events[6:])
    assert got == expected
    assert resumed.pruned == whole.pruned and resumed.pruned_at == whole.pruned_at

    fresh = PruningASHA(**kwargs)  # without the saved rungs the same results decide differently
    for t in trials:
        fresh.on_trial_add(None, SimpleNamespace(trial_id=t))
    assert _replay(fresh, events[6:]) != expected[6:]


def test_asha_state_from_other_milestones_is_refused():
    a = PruningASHA(time_attr="epoch", metric="metric", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    b = PruningASHA(time_attr="epoch", metric="metric", mode="max", max_t=8, grace_period=2, reduction_factor=2)
    with pytest.raises(ValueError, match="milestones"):
        b.load_state_dict(a.state_dict())


def test_a_retried_errored_trial_gets_a_new_optuna_trial_with_its_parameters(tmp_path):
    db = tmp_path / "optuna.db"
    first = _sqlite_searcher(db)
    params = first.suggest("a")
    first.on_trial_result("a", _result(1, 0.3))
    first.on_trial_complete("a", error=True)  # e.g. its node died
    first.save(str(tmp_path / "s.pkl"))
    resumed = _sqlite_searcher(db)
    resumed.retry_errored = True
    resumed.restore(str(tmp_path / "s.pkl"))
    assert resumed.retry_errored
    for epoch, value in ((1, 0.3), (2, 0.4), (3, 0.5)):  # the checkpointed epoch again, then on
        resumed.on_trial_result("a", _result(epoch, value))
    resumed.on_trial_complete("a", _result(3, 0.5, final=True))
    failed, retry = optuna.load_study(study_name="t", storage=f"sqlite:///{db}").trials
    assert failed.state.name == "FAIL" and retry.state.name == "COMPLETE" and retry.value == 0.5
    assert retry.params == failed.params == params
    assert retry.user_attrs == {"tune_trial_id": "a", "retry_of": failed.number}
    assert retry.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}


def test_errored_trials_are_not_reopened_unless_retried(tmp_path):
    searcher = _sqlite_searcher(tmp_path / "optuna.db")
    searcher.suggest("a")
    searcher.on_trial_complete("a", error=True)
    searcher.on_trial_result("a", _result(1, 0.3))
    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 1
