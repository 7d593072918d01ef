"""Warm starts without Ray: opening sources, the seed-or-enqueue decision, projection, seeding a study.

Source runs are real run folders as a sweep leaves them (spec.yaml, ferray_run.json,
folds.parquet, optuna.db), their studies filled with real Optuna trials.
"""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from ferray.errors import ConfigError
from ferray.run.layout import RunLayout
from ferray.run.manifest import write_manifest
from ferray.run.results import ResultsTable
from ferray.run.spec import ParamSpec, SearchSpec, load_search_spec
from ferray.run.status import get_status, render_status
from ferray.run.warm_start import ORIGIN_ATTR
from ferray.search._optuna import make_sampler
from ferray.search._space import define_by_run, distribution
from ferray.search._warm import (
    KEY_ATTR,
    apply_warm_start,
    decide,
    describe,
    open_source,
    open_sources,
    project,
    stamp_study,
    write_record,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

FINGERPRINT = "0123456789abcdef"

SPACE = {
    "optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
    "loss.name": {"type": "categorical", "choices": ["ce", "focal"]},
    "loss.focal_gamma": {"type": "float", "low": 0.5, "high": 3.0, "when": {"loss.name": "focal"}},
}


def _spec(space=SPACE, **sections) -> SearchSpec:
    doc = {
        "name": "first",
        "data": {"source": "synthetic:basic7?count=70&size=48&seed=0"},
        "model": {"backbone": "test_resnet", "pretrained": False},
        "budget": {"trials": 12, "max_epochs": 3, "grace_period": 1},
        "search": {"n_startup_trials": 10, "seed": 0},
        "space": space,
        **sections,
    }
    spec = SearchSpec.model_validate(doc)
    return spec


def _score(params: dict) -> float:
    """A smooth objective peaking at lr = 1e-2 with focal loss (what the sampler should find)."""
    return 0.9 - 0.1 * (math.log10(params["optim.lr"]) + 2) ** 2 - (0.0 if params["loss.name"] == "focal" else 0.05)


def _fill(study, spec: SearchSpec, n: int, pruned_every: int = 4) -> None:
    """``n`` finished trials of ``spec``'s space on ``study``, every ``pruned_every``-th pruned after one epoch."""
    fn = define_by_run(spec.space, spec.base_dict())
    for i in range(n):
        trial = study.ask()
        params = fn(trial)
        value = _score(params)
        trial.report(value - 0.2, 1)
        if (i + 1) % pruned_every == 0:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            for epoch in (2, 3):
                trial.report(value - 0.1 * (3 - epoch), epoch)
            study.tell(trial, value)


def _source_run(tmp_path, spec: SearchSpec, *, name="first", n=8, fingerprint=FINGERPRINT, stamp=False):
    """A run folder as a sweep leaves it, its study holding ``n`` finished trials."""
    import yaml

    from ferray.data import FoldPlan

    run = tmp_path / name
    run.mkdir()
    layout = RunLayout(run)
    layout.spec.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    write_manifest(run, spec, spec_path=None, experiment=str(run), trials=n)
    FoldPlan(
        fold=np.zeros(4, dtype=np.int8),
        ids=np.array(["a", "b", "c", "d"], dtype=object),
        k=2,
        seed=0,
        grouped=False,
        holdout="none",
        data_fingerprint=fingerprint,
    ).save(layout.folds)
    study = optuna.create_study(
        study_name=spec.name,
        storage=f"sqlite:///{layout.study}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    if stamp:
        stamp_study(study, spec, fingerprint)
    _fill(study, spec, n)
    return run


def _new_study(spec: SearchSpec, storage=None):
    return optuna.create_study(study_name="second", storage=storage, direction="maximize", sampler=make_sampler(spec))


# -- the decision ---------------------------------------------------------------------------------


def test_same_data_metric_settings_and_space_seed_the_sampler_with_scores(tmp_path):
    spec = _spec()
    run = _source_run(tmp_path, spec)
    source = open_source(str(run))
    assert source.label == "first" and len(source.trials) == 8

    d = decide(source, spec, FINGERPRINT)
    assert d.action == "seeded", d.reason
    study = _new_study(spec)
    assert apply_warm_start(study, [d]) == {"first": 8}

    assert len(study.trials) == 8
    old = {t.number: t for t in source.trials}
    for t in study.trials:
        assert t.user_attrs[ORIGIN_ATTR] == "seeded"
        before = old[int(t.user_attrs[KEY_ATTR].split("#")[1])]
        assert t.state == before.state and t.params == before.params
        assert t.intermediate_values == before.intermediate_values
        assert t.value == before.value  # COMPLETE with its score, PRUNED with its last epoch value
        assert t.distributions == {n: distribution(spec.space[n]) for n in t.params}
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) == 2


def test_a_wider_space_still_seeds(tmp_path):
    run = _source_run(tmp_path, _spec())
    wider = {**SPACE, "optim.lr": {"type": "float", "low": 1.0e-5, "high": 0.5, "log": True}}
    assert decide(open_source(str(run)), _spec(wider), FINGERPRINT).action == "seeded"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"fingerprint": "ffffffffffffffff"}, "other data (fingerprint 0123456789abcdef there, ffffffffffffffff here)"),
        ({"spec": _spec(search={"metric": "macro_f1"})}, "it optimised accuracy, this sweep macro_f1"),
        ({"spec": _spec(run={"batch_size": 32})}, "other fixed settings (run.batch_size 64 -> 32)"),
        (
            {"spec": _spec(search={"objectives": [{"metric": "accuracy"}, {"metric": "params"}]})},
            "this sweep searches 2 objectives",
        ),
        (
            {"spec": _spec({**SPACE, "optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}})},
            "the space changed: trial",
        ),
        (
            {"spec": _spec({**SPACE, "optim.weight_decay": {"type": "float", "low": 0.0, "high": 0.1}})},
            "it has no value for optim.weight_decay, searched here",
        ),
    ],
)
def test_other_data_metric_settings_or_space_enqueue_the_best_configurations(tmp_path, change, reason):
    run = _source_run(tmp_path, _spec())
    source = open_source(str(run))
    spec = change.get("spec", _spec())
    d = decide(source, spec, change.get("fingerprint", FINGERPRINT), enqueue_top=3)
    assert d.action == "enqueued" and reason in d.reason
    assert len(d.configs) == 3
    best = sorted((t for t in source.trials if t.value is not None), key=lambda t: -t.value)[:3]
    assert d.ranks == [t.number for t in best]

    study = _new_study(spec)
    apply_warm_start(study, [d])
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[ORIGIN_ATTR] for t in waiting] == ["enqueued:first"] * 3
    # The sampler's first trial is the source's best configuration, projected.
    first = study.ask()
    params = define_by_run(spec.space, spec.base_dict())(first)
    assert {k: params[k] for k in d.configs[0]} == d.configs[0]
    assert first.user_attrs[ORIGIN_ATTR] == "enqueued:first"


def test_projection_drops_clips_and_leaves_new_parameters_to_the_sampler_with_reasons(tmp_path):
    run = _source_run(tmp_path, _spec())
    new_space = {
        "optim.lr": {"type": "float", "low": 1.0e-3, "high": 3.0e-3, "log": True},  # narrower: clipped
        "loss.name": {"type": "categorical", "choices": ["focal"]},  # ce is no longer a choice
        "loss.focal_gamma": {"type": "float", "low": 0.5, "high": 3.0, "when": {"loss.name": "focal"}},
        "optim.weight_decay": {"type": "float", "low": 0.0, "high": 0.1},  # new
    }
    spec = _spec(new_space)
    d = decide(open_source(str(run)), spec, FINGERPRINT, enqueue_top=8)
    text = "\n".join(describe([d]))
    assert "the space changed" in text
    assert "optim.weight_decay: new here, the sampler chooses it" in text
    assert "clipped to 0.003 (range [0.001, 0.003])" in text or "clipped to 0.001 (range [0.001, 0.003])" in text
    assert "loss.name = ce dropped: not among the choices ['focal']" in text
    for params in d.configs:
        assert 1e-3 <= params["optim.lr"] <= 3e-3 and "optim.weight_decay" not in params
        assert params.get("loss.name", "focal") == "focal"
    assert len({json.dumps(p, sort_keys=True) for p in d.configs}) == len(d.configs)  # no configuration twice


@pytest.mark.parametrize(
    ("params", "space", "projected", "note"),
    [
        ({"a.x": 7}, {"a.x": ParamSpec(type="int", low=0, high=9, step=3)}, {"a.x": 6}, "moved to 6 (the step grid"),
        ({"a.x": 12}, {"a.x": ParamSpec(type="int", low=0, high=10)}, {"a.x": 10}, "clipped to 10 (range [0, 10])"),
        ({"a.x": "big"}, {"a.x": ParamSpec(type="float", low=0, high=1)}, {}, "dropped: not a number, and float here"),
        ({"a.x": 0.5}, {"a.x": ParamSpec(type="float", low=0, high=1)}, {"a.x": 0.5}, None),
        (
            {"a.k": "x", "a.g": 1.0},
            {
                "a.k": ParamSpec(type="categorical", choices=["x", "y"]),
                "a.g": ParamSpec(type="float", low=0, high=2, when={"a.k": "y"}),
            },
            {"a.k": "x"},
            "a.g = 1 dropped: inactive here",
        ),
        (
            {"a.k": "z", "a.g": 1.0},  # the condition's parameter left to the sampler: the value waits
            {
                "a.k": ParamSpec(type="categorical", choices=["x", "y"]),
                "a.g": ParamSpec(type="float", low=0, high=2, when={"a.k": "y"}),
            },
            {"a.g": 1.0},
            "a.k = z dropped: not among the choices ['x', 'y']",
        ),
    ],
)
def test_project(params, space, projected, note):
    out, notes = project(params, space)
    assert out == projected
    if note is None:
        assert notes == []
    else:
        assert any(note in n for n in notes), notes


def test_seeded_trials_end_the_samplers_random_start_up(tmp_path):
    """The new sweep's TPE models the copied history from its first trial: its first suggestions sit
    near the optimum the old trials found, where a cold study's first (random) ones spread out."""
    spec = _spec(search={"n_startup_trials": 10, "seed": 1})
    run = _source_run(tmp_path, spec, n=30)
    warm = _new_study(spec)
    apply_warm_start(warm, [decide(open_source(str(run)), spec, FINGERPRINT)])
    cold = _new_study(spec)
    assert len(warm.trials) == 30 and len(cold.trials) == 0
    fn = define_by_run(spec.space, spec.base_dict())

    def distance(study) -> float:
        out = []
        for _ in range(10):
            trial = study.ask()
            params = fn(trial)
            out.append(abs(math.log10(params["optim.lr"]) + 2))
            study.tell(trial, _score(params))
        return float(np.mean(out))

    assert distance(warm) < 0.6 * distance(cold)


def test_applying_twice_adds_nothing_the_second_time(tmp_path):
    spec = _spec()
    run = _source_run(tmp_path, spec)
    seeded = decide(open_source(str(run)), spec, FINGERPRINT)
    other = open_source(str(run))
    other.label = "other"
    enqueued = decide(other, spec, "ffffffffffffffff", enqueue_top=2)
    storage = f"sqlite:///{tmp_path / 'new.db'}"
    study = _new_study(spec, storage)
    assert apply_warm_start(study, [seeded, enqueued]) == {"first": 8, "other": 2}
    # The same study reopened (a restarted driver): nothing is added again.
    again = optuna.load_study(study_name="second", storage=storage)
    assert apply_warm_start(again, [seeded, enqueued]) == {"first": 0, "other": 0}
    assert len(again.trials) == 10
    # An enqueued configuration taken by a trial is not enqueued again either.
    again.ask()
    assert apply_warm_start(again, [seeded, enqueued]) == {"first": 0, "other": 0}
    assert len(again.trials) == 10


# -- sources -----------------------------------------------------------------------------------------


def test_a_bare_study_file_seeds_when_its_sweep_recorded_data_metric_and_settings(tmp_path):
    spec = _spec()
    stamped = _source_run(tmp_path, spec, name="stamped", stamp=True)
    plain = _source_run(tmp_path, spec, name="plain")
    d = decide(open_source(str(RunLayout(stamped).study)), spec, FINGERPRINT)
    assert d.action == "seeded" and d.source.label == "stamped"
    d = decide(open_source(str(RunLayout(plain).study)), spec, FINGERPRINT)
    assert d.action == "enqueued" and "did not record its metric" in d.reason


def test_a_journal_study_file_is_a_source(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    spec = _spec()
    path = tmp_path / "study.log"
    study = optuna.create_study(
        study_name="j", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))), direction="maximize"
    )
    _fill(study, spec, 5)
    source = open_source(str(path))
    assert source.label == "study" and len(source.trials) == 5
    assert decide(source, spec, FINGERPRINT).action == "enqueued"


def test_a_run_folder_on_storage_is_a_source(tmp_path):
    run = _source_run(tmp_path, _spec())
    source = open_source(run.as_uri())  # file:///... through pyarrow's filesystems, as s3://
    assert source.label == "first" and len(source.trials) == 8 and source.fingerprint == FINGERPRINT
    assert decide(source, _spec(), FINGERPRINT).action == "seeded"
    assert open_source((run / "optuna.db").as_uri()).label == "first"  # a run's study file, on storage


def test_labels_of_two_sources_of_one_name_differ(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _source_run(tmp_path / "a", _spec())
    two = _source_run(tmp_path / "b", _spec())
    assert [s.label for s in open_sources([str(one), str(two)])] == ["first", "first-2"]


def test_bad_sources_name_the_value_and_what_is_accepted(tmp_path):
    accepted = "a ferray run folder"
    with pytest.raises(ConfigError, match=r"search.warm_start: '.*nowhere': no such file or folder; give " + accepted):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"'.*folder': a folder but not a ferray run \(it lacks ferray_run.json"):
        open_source(str(tmp_path / "folder"))
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ConfigError, match=r"notes.txt is not an Optuna study \(SQLite or journal file\); give"):
        open_source(str(tmp_path / "notes.txt"))
    storage = f"sqlite:///{tmp_path / 'two.db'}"
    optuna.create_study(study_name="x", storage=storage)
    optuna.create_study(study_name="y", storage=storage)
    with pytest.raises(ConfigError, match=r"holds 2 studies \(x, y\)"):
        open_source(str(tmp_path / "two.db"))
    with pytest.raises(ConfigError, match=r"nothing there on storage"):
        open_source((tmp_path / "gone").as_uri())


def test_a_source_without_finished_trials_gives_nothing(tmp_path):
    spec = _spec()
    run = _source_run(tmp_path, spec, n=0)
    d = decide(open_source(str(run)), spec, FINGERPRINT)
    assert d.action == "none" and "no finished trial" in describe([d])[0]


# -- the spec key and the run's record ------------------------------------------------------------------


def test_the_spec_key_takes_a_path_a_list_or_a_mapping(tmp_path):
    assert _spec(search={"warm_start": "runs/a"}).search.warm_start.sources == ["runs/a"]
    ws = _spec(search={"warm_start": {"sources": ["runs/a", "runs/b"], "enqueue_top": 2}}).search.warm_start
    assert ws.sources == ["runs/a", "runs/b"] and ws.enqueue_top == 2
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: t\nspace:\n  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n"
        "search:\n  warm_start: {sources: [runs/a, runs/a], enqueu_top: 2}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_search_spec(path, check_backbones=False)
    assert "search.warm_start" in str(err.value) and "enqueu_top" in str(err.value)


def test_status_shows_origins_and_the_warm_start_but_no_seeded_history(tmp_path):
    spec = _spec()
    source = open_source(str(_source_run(tmp_path, spec)))
    run = tmp_path / "second"
    run.mkdir()
    decisions = [decide(source, spec, FINGERPRINT)]
    write_record(run, decisions)
    t = ResultsTable()
    t.add_result("t1", {"optim.lr": 0.01}, {"epoch": 1, "metric": 0.5}, 8, origin="enqueued:first")
    t.set_state("t1", "COMPLETED")
    t.add_result("t2", {"optim.lr": 0.02}, {"epoch": 1, "metric": 0.4}, 9, origin="cold")
    t.set_state("t2", "PRUNED")
    t.write(RunLayout(run).results)
    # The origin survives a resumed sweep's reload of the table.
    assert {r["trial_id"]: r["origin"] for r in ResultsTable.load(RunLayout(run).results).rows()} == {
        "t1": "enqueued:first",
        "t2": "cold",
    }
    status = get_status(run)
    assert [(x["trial_id"], x["origin"]) for x in status["trials"]] == [("t1", "enqueued:first"), ("t2", "cold")]
    assert status["warm_start"]["sources"][0]["action"] == "seeded"
    assert status["warm_start"]["sources"][0]["trials"] == 8
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_status(status))
    text = console.export_text()
    assert "enqueued:first" in text and "origin" in text
    assert f"warm start from {source.value}: 8 finished trials seeded the sampler" in text


# -- the sweep's searcher ---------------------------------------------------------------------------------


def _searcher(spec: SearchSpec, storage: str):
    from ferray.search._optuna import PruneAwareOptunaSearch

    return PruneAwareOptunaSearch(
        define_by_run(spec.space, spec.base_dict()),
        metric="metric",
        mode="max",
        sampler=make_sampler(spec),
        study_name="second",
        storage=optuna.storages.RDBStorage(storage),
        max_epochs=3,
        seed=0,
    )


def test_the_searcher_hands_out_enqueued_configurations_once_across_a_restore(tmp_path):
    """What a resumed sweep does: a new searcher on the same study, restored from the saved state."""
    spec = _spec()
    source = open_source(str(_source_run(tmp_path, spec)))
    d = decide(source, spec, "ffffffffffffffff", enqueue_top=3)
    storage = f"sqlite:///{tmp_path / 'second.db'}"
    searcher = _searcher(spec, storage)
    apply_warm_start(searcher.study, [d])
    first = searcher.suggest("t1")
    assert searcher.origin("t1") == "enqueued:first"
    assert {k: first[k] for k in d.configs[0]} == d.configs[0]
    searcher.on_trial_complete("t1", {"epoch": 3, "metric": 0.5, "final": True})
    searcher.save(str(tmp_path / "searcher.pkl"))

    restored = _searcher(spec, storage)  # the resumed sweep's: warm start is not applied again
    restored.restore(str(tmp_path / "searcher.pkl"))
    origins = []
    for tid in ("t2", "t3", "t4"):
        params = restored.suggest(tid)
        origins.append(restored.origin(tid))
        restored.on_trial_complete(tid, {"epoch": 3, "metric": _score(params), "final": True})
    assert origins == ["enqueued:first", "enqueued:first", "cold"]
    keys = [t.user_attrs.get(KEY_ATTR) for t in restored.study.trials]
    assert len(keys) == 4 and len(set(keys)) == 4  # each configuration ran once


def test_a_bad_source_stops_the_sweep_before_its_run_folder_exists(tmp_path):
    from ferray.search import run_search

    with pytest.raises(ConfigError, match=r"search.warm_start: '.*nowhere': no such file or folder"):
        run_search(_spec(), run_dir=tmp_path / "runs" / "x", warm_start=[str(tmp_path / "nowhere")])
    assert not (tmp_path / "runs").exists()


def test_the_dry_run_says_what_a_warm_start_would_take(tmp_path):
    import yaml

    from ferray.search import dry_run

    spec = _spec()
    run = _source_run(tmp_path, spec)  # recorded on other data than the spec's synthetic faces
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    text = dry_run(path, num_cpus=2, warm_start=[str(run)])
    assert f"warm start from {run}: other data (fingerprint {FINGERPRINT} there" in text
    assert "configurations are evaluated first" in text


def test_warm_start_is_a_repeatable_option_of_ferray_search():
    import argparse

    from ferray.search._cli import add_commands

    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["search", "s.yaml", "--warm-start", "runs/a", "--warm-start", "s3://b/runs/c"])
    assert args.warm_start == ["runs/a", "s3://b/runs/c"]
    assert parser.parse_args(["search"]).warm_start == []
