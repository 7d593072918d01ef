"""`ferray resume` refusals and manifest checks: all decided before Ray starts."""

from __future__ import annotations

import pytest

from ferray.cli import main
from ferray.errors import ConfigError, DataError
from ferray.run.layout import RunLayout
from ferray.run.manifest import write_manifest
from ferray.run.results import ResultsTable
from ferray.search import load_search_spec, resume_search
from ferray.search._resume import check_resumable, spec_differences
from ferray.training._kfold import load_data, make_fold_plan

SPEC = """\
name: r
data: {source: "synthetic:basic7?count=70&size=48&seed=0"}
folds: {k: 2}
model: {backbone: test_resnet, pretrained: false}
budget: {trials: 2, max_epochs: 3, grace_period: 1, reduction_factor: 2}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
"""


@pytest.fixture
def run(tmp_path):
    """A run directory laid out as `ferray search` leaves it before its first trial."""
    import optuna

    source = tmp_path / "r.yaml"
    source.write_text(SPEC)
    spec = load_search_spec(source)
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text(SPEC)
    data = load_data(spec.base_config())
    make_fold_plan(spec.base_config(), data).save(run / "folds.parquet")
    optuna.create_study(study_name="r", storage=f"sqlite:///{run / 'optuna.db'}")
    write_manifest(run, spec, spec_path=source, experiment=str(run), trials=2)
    return run


def test_a_sweep_directory_passes_the_checks(run):
    checked = check_resumable(run)
    assert checked.plan.k == 2 and len(checked.data) == 70 and checked.finished_trials == 0
    assert checked.manifest["trials"] == 2


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        check_resumable(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match=f"is not a ferray run directory: it lacks {RunLayout.MANIFEST}, spec.yaml"):
        check_resumable(tmp_path)
    assert main(["resume", str(tmp_path)]) == 2


def test_an_edited_spec_is_refused_with_each_change(run, capsys):
    (run / "spec.yaml").write_text(SPEC.replace("max_epochs: 3", "max_epochs: 5").replace("high: 1.0e-2", "high: 0.1"))
    with pytest.raises(ConfigError) as err:
        check_resumable(run)
    text = str(err.value)
    assert str(run / "spec.yaml") in text and "was edited since the sweep started" in text
    assert "budget.max_epochs: 3 -> 5" in text and "space.optim.lr.high: 0.01 -> 0.1" in text
    assert main(["resume", str(run)]) == 2
    assert "budget.max_epochs: 3 -> 5" in capsys.readouterr().err


def test_settings_that_change_no_trial_and_settings_a_newer_ferray_added_do_not_block_a_resume(run):
    import json

    # The stages after the trials (ensemble, distillation) and what the folder keeps may change.
    (run / "spec.yaml").write_text(SPEC + "ensemble: {top_k: 2}\ndistill: {temperature: 2.0}\nretention: {margin: 0}\n")
    check_resumable(run)
    # A sweep started by a ferray that had one setting fewer and one more than this one.
    doc = json.loads((run / RunLayout.MANIFEST).read_text())
    del doc["spec"]["budget"]["max_concurrent"]
    doc["spec"]["budget"]["gone_since"] = 1
    (run / RunLayout.MANIFEST).write_text(json.dumps(doc))
    check_resumable(run)
    # A search setting still may not.
    (run / "spec.yaml").write_text(SPEC.replace("trials: 2", "trials: 3"))
    with pytest.raises(ConfigError, match=r"budget\.trials: 2 -> 3"):
        check_resumable(run)


def test_an_edited_source_spec_is_noted_not_used(run):
    (run.parent / "r.yaml").write_text(SPEC.replace("trials: 2", "trials: 9"))
    notes: list[str] = []
    check_resumable(run, echo=notes.append)
    assert len(notes) == 1 and "budget.trials: 2 -> 9" in notes[0] and "continues with the spec it started" in notes[0]


def test_changed_data_is_refused(run):
    # The sweep started on other faces than the source now gives (as if the file was replaced).
    cfg = load_search_spec(run / "spec.yaml").base_config()
    started_on = load_data(cfg, source="synthetic:basic7?count=70&size=48&seed=1")
    make_fold_plan(cfg, started_on).save(run / "folds.parquet")
    with pytest.raises(DataError, match=r"changed since the sweep started: fingerprint \w+ \(70 rows\) then"):
        check_resumable(run)


def test_a_finished_sweep_has_nothing_to_resume(run):
    table = ResultsTable()
    for tid in ("a", "b"):
        table.add_result(tid, {"optim.lr": 0.001}, {"epoch": 3, "metric": 0.4, "final": True})
        table.set_state(tid, "COMPLETED")
    table.write(run / "results.parquet")
    said: list[str] = []
    result = resume_search(run, echo=said.append)  # returns before starting Ray
    assert "all 2 trials of this sweep have ended; nothing to resume" in said[0] and "--extend N" in said[0]
    assert result.status["counts"] == {"COMPLETED": 2}
    with pytest.raises(ConfigError, match="--extend -1"):
        resume_search(run, extend=-1)


def test_spec_differences_name_added_and_removed_keys():
    assert spec_differences({"a": {"b": 1}}, {"a": {"c": 2}}) == ["a.b: 1 -> (removed)", "a.c: (absent) -> 2"]


def test_a_warm_start_given_on_the_command_line_resumes_without_a_note(run, tmp_path):
    """`--warm-start` is recorded in the run's spec.yaml, not in the spec file; a resume never applies it again."""
    import yaml

    from ferray.search._warm import with_sources

    spec = with_sources(load_search_spec(tmp_path / "r.yaml"), [str(tmp_path / "earlier")])
    (run / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    write_manifest(run, spec, spec_path=tmp_path / "r.yaml", experiment=str(run), trials=2)
    notes: list[str] = []
    check_resumable(run, echo=notes.append)
    assert notes == []
