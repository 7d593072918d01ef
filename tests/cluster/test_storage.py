"""Run directories on storage: pushing the driver's files, pulling a run (file:// URIs, pyarrow's code path for s3://)."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from ferray.cluster import ClusterError, join_uri, pull_run, push_run
from ferray.run.layout import RunLayout


def _driver_files(run):
    layout = RunLayout(run)
    run.mkdir(parents=True)
    layout.manifest.write_text('{"format": 1}')
    layout.spec.write_text("name: t\n")
    layout.folds.write_bytes(b"folds")
    layout.results.write_bytes(b"results")
    db = sqlite3.connect(layout.study)
    db.execute("create table trials (id integer, value real)")
    db.execute("insert into trials values (1, 0.5)")
    db.commit()
    db.close()
    (layout.tensorboard / "t1").mkdir(parents=True)
    (layout.tensorboard / "t1" / "events.out").write_bytes(b"ev")
    return layout


def _trial_on_storage(store, trial="t1"):
    t = store / trial
    (t / "checkpoints" / "epoch_0001").mkdir(parents=True)
    (t / "checkpoints" / "epoch_0001" / "fold_0.pt").write_bytes(b"ckpt")
    (t / "weights").mkdir()
    (t / "weights" / "fold_0.safetensors").write_bytes(b"w" * 10)
    for name in ("config.yaml", "oof.parquet", "holdout.parquet", "metrics.json"):
        (t / name).write_text(name)
    return t


def _pushed_run_with_a_trial(tmp_path):
    """A run pushed to ``tmp_path/store/r1``, where its trial ``t1`` wrote its files; the store's path."""
    run = tmp_path / "r1"
    _driver_files(run)
    store = tmp_path / "store" / "r1"
    push_run(run, f"file://{store}")
    _trial_on_storage(store)
    return store


def test_join_uri_keeps_the_query_string_last():
    assert join_uri("s3://b/ferray?region=eu-west-1", "run", "t1") == "s3://b/ferray/run/t1?region=eu-west-1"
    assert join_uri("file:///x/", "/run/") == "file:///x/run"


def test_push_copies_the_driver_files_but_not_trial_folders(tmp_path):
    run = tmp_path / "runs" / "r1"
    _driver_files(run)
    (run / "t9").mkdir()
    (run / "t9" / "config.yaml").write_text("a pulled trial")  # trials write to storage themselves
    (run / ".results.parquet.abcd.tmp").write_bytes(b"half")
    store = tmp_path / "store" / "r1"
    lines = []
    n = push_run(run, f"file://{store}", echo=lines.append)
    assert n == 6 and lines and "pushed 6 files" in lines[0]
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()) == [
        "ferray_run.json",
        "folds.parquet",
        "optuna.db",
        "results.parquet",
        "spec.yaml",
        "tensorboard/t1/events.out",
    ]
    db = sqlite3.connect(store / "optuna.db")  # a consistent snapshot of the study
    assert db.execute("select value from trials").fetchall() == [(0.5,)]
    db.close()


def test_push_skips_work_in_progress_and_mirrors_the_stages_folders(tmp_path):
    run = tmp_path / "r1"
    layout = _driver_files(run)
    (run / ".bundle.tmp-1234").mkdir()
    (run / ".bundle.tmp-1234" / "ensemble.onnx").write_bytes(b"half an export")
    (layout.bundle / "weights" / "old").mkdir(parents=True)
    (layout.bundle / "weights" / "old" / "fold_0.safetensors").write_bytes(b"old member")
    (layout.bundle / "manifest.json").write_text("{}")
    store = tmp_path / "store" / "r1"
    (store / "tuner.pkl").parent.mkdir(parents=True)
    (store / "tuner.pkl").write_bytes(b"Tune writes its state to storage itself")
    push_run(run, f"file://{store}")
    assert not (store / ".bundle.tmp-1234").exists()
    assert (store / "bundle" / "weights" / "old" / "fold_0.safetensors").is_file()
    (layout.bundle / "weights" / "old" / "fold_0.safetensors").unlink()  # a new export replaced the bundle
    (layout.bundle / "weights" / "new").mkdir()
    (layout.bundle / "weights" / "new" / "fold_0.safetensors").write_bytes(b"new member")
    push_run(run, f"file://{store}")
    assert sorted(p.relative_to(store / "bundle").as_posix() for p in (store / "bundle").rglob("*") if p.is_file()) == [
        "manifest.json",
        "weights/new/fold_0.safetensors",
    ]
    assert (store / "tuner.pkl").is_file()  # outside the stages' folders nothing is deleted


def test_push_again_copies_only_what_changed(tmp_path):
    run = tmp_path / "r1"
    layout = _driver_files(run)
    uri = f"file://{tmp_path / 'store' / 'r1'}"
    push_run(run, uri)
    assert push_run(run, uri) == 0
    time.sleep(0.01)
    layout.results.write_bytes(b"results, one more trial")
    assert push_run(run, uri) == 1
    assert (tmp_path / "store" / "r1" / "results.parquet").read_bytes() == b"results, one more trial"


def test_pull_leaves_checkpoints_on_storage_and_fetches_only_changes(tmp_path):
    store = _pushed_run_with_a_trial(tmp_path)
    laptop = tmp_path / "laptop" / "r1"
    out = pull_run(f"file://{store}", laptop, echo=lambda line: None)
    assert out == laptop
    assert (laptop / "t1" / "oof.parquet").read_text() == "oof.parquet"
    assert (laptop / "t1" / "weights" / "fold_0.safetensors").is_file()
    assert not (laptop / "t1" / "checkpoints").exists()
    assert [t.trial_id for t in RunLayout(laptop).trials()] == ["t1"]
    lines = []
    pull_run(f"file://{store}", laptop, echo=lines.append)
    assert lines == [f"pulled 0 files (0.0 MB) of file://{store} to {laptop}"]


def test_pull_options_for_checkpoints_and_weights(tmp_path):
    store = _pushed_run_with_a_trial(tmp_path)
    light = pull_run(f"file://{store}", tmp_path / "light", weights=False)
    assert not (light / "t1" / "weights").exists() and (light / "t1" / "metrics.json").is_file()
    full = pull_run(f"file://{store}", tmp_path / "full", checkpoints=True)
    assert (full / "t1" / "checkpoints" / "epoch_0001" / "fold_0.pt").read_bytes() == b"ckpt"


def test_pull_keeps_a_local_file_newer_than_storage(tmp_path):
    run = tmp_path / "r1"
    layout = _driver_files(run)
    store = tmp_path / "store" / "r1"
    push_run(run, f"file://{store}")
    later = time.time() + 60
    layout.results.write_bytes(b"newer here")
    os.utime(layout.results, (later, later))
    pull_run(f"file://{store}", run)
    assert layout.results.read_bytes() == b"newer here"


def test_pull_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ClusterError, match=r"nothing there \(give the run folder on storage: STORAGE/NAME\)"):
        pull_run(f"file://{tmp_path / 'missing'}", tmp_path / "x")
    _trial_on_storage(tmp_path / "store" / "r1")
    with pytest.raises(
        ClusterError,
        match=r"not a ferray run directory \(no ferray_run.json\); its trials are "
        r"there but the driver's files were never pushed",
    ):
        pull_run(f"file://{tmp_path / 'store' / 'r1'}", tmp_path / "x")


def test_a_bad_uri_is_named(tmp_path):
    with pytest.raises(ClusterError, match=r"nosuchscheme://bucket/x: not a storage URI this machine can open"):
        pull_run("nosuchscheme://bucket/x", tmp_path / "x")
    with pytest.raises(ClusterError, match=r"no such run directory to push"):
        push_run(tmp_path / "absent", f"file://{tmp_path / 'store'}")
