"""The retention policy on constructed run folders (no Ray cluster).

A run folder here is data, not a fake sweep: epoch checkpoints written with
``save_fold_state`` under Ray Train's layout and checkpoint list, weights written with
``save_weights`` of a tiny model, predictions with ``write_predictions`` and the results
table with :class:`ferray.run.ResultsTable`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ferray.errors import ConfigError, DataError
from ferray.run.disk import directory_size
from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.predictions import Predictions, write_predictions
from ferray.run.results import ResultsTable
from ferray.run.retention import apply_retention
from ferray.run.status import get_status, render_status
from ferray.run.trial_record import ended_history, retry_notes
from ferray.search import load_search_spec
from ferray.training.checkpoint import load_fold_state, save_fold_state

CLASSES = ["angry", "happy", "neutral", "sad"]
K = 2
SNAPSHOT = "checkpoint_manager_snapshot.json"

SPEC = """\
name: t
data: {source: "synthetic:basic7?count=70&size=48&seed=0"}
folds: {k: 2}
model: {backbone: test_resnet, pretrained: false}
budget: {trials: 12, max_epochs: 3, grace_period: 1, reduction_factor: 2}
space:
  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
ensemble: {top_k: 2, greedy: {pool: top_k}}
"""
# greedy.pool top_k: the rank rule alone. POOL_ALL below is the default, greedy drawing from every trial.
POOL_ALL = SPEC.replace("ensemble: {top_k: 2, greedy: {pool: top_k}}", "ensemble: {top_k: 2}")


def _metrics(epoch: int, metric: float, final: bool) -> dict:
    return {"epoch": epoch, "metric": metric, "val_accuracy_mean": metric, "val_accuracy_std": 0.01, "final": final}


def write_snapshot(ckpt_dir: Path, names: list[str], metrics: list[dict]) -> None:
    """Ray Train's checkpoint list as CheckpointManager._save_state writes it."""
    import ray

    results = [{"version": 0, "checkpoint_dir_name": n, "metrics": m} for n, m in zip(names, metrics)]
    doc = {
        "ray_version": ray.__version__,
        "checkpoint_results": results,
        "checkpoint_report_indices": list(range(len(names))),
        "latest_checkpoint_result": results[-1] if results else None,
        "pending_training_results": [],
        "pending_validation_specs": [],
        "current_report_index": len(names),
        "validated_checkpoint_dir_names": [],
        "timed_out_validation_checkpoint_dir_names": [],
        "failed_validation_checkpoint_dir_names": [],
    }
    (ckpt_dir / SNAPSHOT).write_text(json.dumps(doc))


def fold_state(epoch: int, history: list[dict]) -> dict:
    g = torch.Generator().manual_seed(epoch)
    w = torch.randn(128, 128, generator=g)  # 64 KB: weights + two optimiser moments
    return {
        "trainer": {"epoch": epoch, "model": {"w": w}, "optimizer": {"m": w * 0.1, "v": w * w}},
        "history": history,
        "best": history[-1]["metric"],
        "best_epoch": epoch,
        "since_best": 0,
    }


_MODEL_CACHE: dict = {}


def tiny_weights(trial: TrialLayout, seed: int) -> None:
    from ferray.training.config import TrainConfig
    from ferray.training.models import build_model
    from ferray.training.weights import save_weights

    cfg = TrainConfig.model_validate({"model": {"backbone": "test_resnet", "pretrained": False}})
    for fold in range(K):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 10 + fold)
            model = build_model(cfg.model, num_classes=len(CLASSES), in_chans=1, img_size=16)
        meta = {
            "train": cfg.model_dump(mode="json"),
            "num_classes": len(CLASSES),
            "in_chans": 1,
            "img_size": 16,
            "class_names": CLASSES,
            "fold": fold,
            "k": K,
            "ema": False,
            "normalise": {"mean": 0.5, "std": 0.5},
            "data_fingerprint": "fp",
        }
        save_weights(model, trial.weights(fold), meta)


def predictions(trial: TrialLayout, seed: int, n: int = 40, n_hold: int = 10) -> None:
    rng = np.random.default_rng(seed)
    labels = np.arange(n + n_hold) % len(CLASSES)
    ids = np.array([f"img_{i}" for i in range(n + n_hold)], dtype=object)
    meta = {"class_names": CLASSES, "k": K, "data_fingerprint": "fp", "tta": []}
    rows = np.arange(n)
    probs = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float32)
    write_predictions(
        Predictions(rows, ids[rows], rows % K, labels[rows], probs, None, {**meta, "kind": "oof"}), trial.oof
    )
    hrows = np.tile(np.arange(n, n + n_hold), K)
    hprobs = rng.dirichlet(np.ones(len(CLASSES)), len(hrows)).astype(np.float32)
    write_predictions(
        Predictions(
            hrows, ids[hrows], np.repeat(np.arange(K), n_hold), labels[hrows], hprobs, None, {**meta, "kind": "holdout"}
        ),
        trial.holdout,
    )
    trial.metrics.write_text(json.dumps({"oof": {"accuracy": 0.5}}))


def add_trial(
    run: RunLayout,
    table: ResultsTable,
    tid: str,
    state: str,
    metric: float | None,
    *,
    number: int,
    epochs: int = 2,
    listed: int = 1,
    partial: bool = False,
    weights: bool = False,
    preds: bool = False,
    table_state: str | None = None,
) -> TrialLayout:
    """A trial folder as a sweep leaves it: ``epochs`` trained, the last ``listed`` checkpoints in
    Train's list, ``partial``: a further epoch's copy cut short (unlisted, one fold's file torn)."""
    trial = run.trial(tid)
    trial.root.mkdir(parents=True)
    trial.config.write_text("model: {backbone: test_resnet}\n")
    params = {"optim.lr": 0.001 * (number + 1)}
    table.add_trial(tid, params, number=number)
    history = []
    for epoch in range(1, epochs + 1):
        m = _metrics(
            epoch, (metric or 0.1) * (0.8 + 0.2 * epoch / epochs), final=epoch == epochs and state == "COMPLETED"
        )
        history.append(m)
        if metric is not None:
            table.add_result(tid, params, m)
    table.set_state(tid, table_state or state, error="TrainingFailed: boom" if state == "ERROR" else None)
    names = [f"epoch_{e:04d}" for e in range(epochs - listed + 1, epochs + 1)] if listed else []
    for name in names:
        epoch = int(name.split("_")[1])
        for fold in range(K):
            save_fold_state(fold_state(epoch, history[:epoch]), trial.fold_checkpoint(trial.checkpoints / name, fold))
    if names:
        write_snapshot(trial.checkpoints, names, [history[int(n.split("_")[1]) - 1] for n in names])
    if partial:
        torn = trial.checkpoints / f"epoch_{epochs + 1:04d}"
        save_fold_state(fold_state(epochs + 1, history), trial.fold_checkpoint(torn, 0))
        path = trial.fold_checkpoint(torn, 0)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if weights:
        tiny_weights(trial, number)
    if preds:
        predictions(trial, number)
    return trial


def make_run(
    root: Path, spec: str = SPEC, retention: str = "", running: tuple[str, ...] = ()
) -> tuple[RunLayout, dict[str, TrialLayout]]:
    """Seven completed trials (c1 best .. c7), one pruned, one errored with an older checkpoint
    and a torn copy, one running and one stopped; ensemble.top_k 2, retention margin 2 (default).
    Trials named in ``running`` are RUNNING in the results table (their end not yet recorded)."""
    run = RunLayout(root)
    root.mkdir(parents=True)
    run.spec.write_text(spec + retention)
    table = ResultsTable()
    trials = {}
    for i in range(7):
        tid = f"c{i + 1}"
        trials[tid] = add_trial(
            run,
            table,
            tid,
            "COMPLETED",
            0.9 - 0.05 * i,
            number=i,
            weights=True,
            preds=True,
            table_state="RUNNING" if tid in running else None,
        )
    trials["p1"] = add_trial(run, table, "p1", "PRUNED", 0.3, number=7, epochs=1)
    trials["e1"] = add_trial(run, table, "e1", "ERROR", 0.5, number=8, epochs=3, listed=2, partial=True, weights=True)
    trials["r1"] = add_trial(run, table, "r1", "RUNNING", 0.6, number=9, epochs=2, listed=2, partial=True)
    trials["s1"] = add_trial(run, table, "s1", "STOPPED", 0.6, number=10, epochs=2, listed=1)
    table.write(run.results)
    return run, trials


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root``: relative path -> (size, mtime in ns)."""
    out = {}
    for base, _, files in os.walk(root):
        for f in files:
            p = Path(base, f)
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _logits(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else next(iter(out.values()))


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run")


# -- the policy ----------------------------------------------------------------------------------


def test_policy_keeps_weights_of_candidates_and_predictions_of_all(run):
    layout, trials = run
    results_before = layout.results.read_bytes()
    untouched = {t: tree(trials[t].root) for t in ("r1", "s1")}

    report = apply_retention(layout.root)

    # ensemble.top_k 2 + margin 2: the 4 best completed trials keep their weights, nothing else.
    assert report.candidates == ["c1", "c2", "c3", "c4"]
    for tid in ("c1", "c2", "c3", "c4"):
        t = trials[tid]
        assert sorted(p.name for p in t.weights_dir.iterdir()) == ["fold_0.safetensors", "fold_1.safetensors"]
        assert not t.checkpoints.exists()
    for tid in ("c5", "c6", "c7", "p1"):
        t = trials[tid]
        assert not t.weights_dir.exists() and not t.checkpoints.exists(), tid
    for tid in [f"c{i}" for i in range(1, 8)]:  # every completed trial keeps metrics and predictions
        t = trials[tid]
        assert t.oof.is_file() and t.holdout.is_file() and t.metrics.is_file() and t.config.is_file()
    # The errored trial keeps its last checkpoint (and Train's list names only it); the older
    # one and the torn copy go.
    e1 = trials["e1"]
    assert [p.name for p in e1.checkpoint_epochs()] == ["epoch_0003"]
    doc = json.loads((e1.checkpoints / SNAPSHOT).read_text())
    assert [r["checkpoint_dir_name"] for r in doc["checkpoint_results"]] == ["epoch_0003"]
    assert doc["checkpoint_report_indices"] == [1]
    assert e1.weights_dir.is_dir()
    # Running and stopped trials may continue: untouched. So is the results table.
    assert {t: tree(trials[t].root) for t in ("r1", "s1")} == untouched
    assert layout.results.read_bytes() == results_before
    assert report.size_after == directory_size(layout.root)
    # What went, less the small records the policy writes (retention.json, retention.jsonl).
    assert 0.95 * report.bytes < report.size_before - report.size_after <= report.bytes
    assert any("outside the best 4" in line for line in report.lines())


def test_ensemble_stage_finds_the_weights_it_needs(run):
    from ferray.ensemble._members import load_members, select_members
    from ferray.run.status import get_status
    from ferray.training import load_fold_models

    layout, trials = run
    apply_retention(layout.root)
    status = get_status(layout.root)
    top = select_members(layout, status, top=2)  # the spec's ensemble.top_k
    assert [t["trial_id"] for t in top] == ["c1", "c2"]
    for t in top:
        models = load_fold_models(layout.trial(t["trial_id"]))
        assert len(models) == K
        assert torch.isfinite(_logits(models[0](torch.zeros(1, 1, 16, 16)))).all()
    # Every completed trial can still be ranked and combined by its predictions ...
    members = load_members(layout, select_members(layout, status, top=7))
    assert members.oof.shape[0] == 7
    # ... but one outside the candidates has no weights left to export, and says why.
    with pytest.raises(DataError, match="retention"):
        load_fold_models(trials["c6"])


def test_prune_dry_run_changes_nothing(run):
    layout, _ = run
    before = tree(layout.root)
    planned = apply_retention(layout.root, dry_run=True)
    assert tree(layout.root) == before
    assert planned.dry_run and planned.trials and planned.bytes > 0
    assert "would remove" in "\n".join(planned.lines())
    done = apply_retention(layout.root)
    assert ({t.trial_id for t in done.trials}, done.bytes, done.files) == (
        {t.trial_id for t in planned.trials},
        planned.bytes,
        planned.files,
    )
    assert abs(planned.size_after - done.size_after) < 0.01 * planned.size_before  # the records it writes


def test_a_second_pass_removes_nothing(run):
    layout, _ = run
    apply_retention(layout.root)
    before = tree(layout.root)
    again = apply_retention(layout.root)
    assert again.trials == [] and tree(layout.root) == before
    assert "nothing to remove" in again.lines()[0]


def test_status_shows_size_and_what_was_removed(run):
    from rich.console import Console

    layout, _ = run
    status = get_status(layout.root, disk=True)
    assert status["disk"] == {
        "bytes": directory_size(layout.root),
        "removed_bytes": 0,
        "removed_files": 0,
        "cleaned_trials": 0,
    }
    assert "disk" not in get_status(layout.root)  # library callers do not pay for the walk
    report = apply_retention(layout.root)
    disk = get_status(layout.root, disk=True)["disk"]
    assert disk["bytes"] == directory_size(layout.root)
    assert (disk["removed_bytes"], disk["removed_files"], disk["cleaned_trials"]) == (
        report.bytes,
        report.files,
        len(report.trials),
    )
    console = Console(width=200, record=True)
    console.print(render_status(get_status(layout.root, disk=True)))
    text = console.export_text()
    assert f"run directory: {disk['bytes'] / 1e6:.1f} MB" in text
    assert f"the retention policy removed {report.bytes / 1e6:.1f} MB in {report.files} file(s)" in text


def test_keep_top_overrides_and_ensemble_members_stay(run):
    layout, trials = run
    layout.ensemble.mkdir()
    layout.ensemble_files.summary.write_text(json.dumps({"members": [{"trial_id": "c1"}, {"trial_id": "c6"}]}))
    report = apply_retention(layout.root, keep_top=1)
    assert report.candidates == ["c1"]
    assert trials["c1"].weights_dir.is_dir() and trials["c6"].weights_dir.is_dir()  # c6: an ensemble member
    assert not trials["c2"].weights_dir.exists()
    with pytest.raises(ConfigError, match="--keep-top 0"):
        apply_retention(layout.root, keep_top=0)


# -- greedy selection's pool (ensemble.greedy.pool) ---------------------------------------------------


def _ensemble_json(layout: RunLayout, doc: dict) -> None:
    layout.ensemble.mkdir(exist_ok=True)
    layout.ensemble_files.summary.write_text(json.dumps(doc))


def _with_weights(trials: dict[str, TrialLayout]) -> list[str]:
    return sorted(t for t, trial in trials.items() if trial.weights_dir.is_dir())


def test_pool_all_keeps_completed_weights_until_an_ensemble_considered_them(tmp_path):
    layout, trials = make_run(tmp_path / "run", spec=POOL_ALL)  # the default: greedy.pool all
    report = apply_retention(layout.root)
    # No ensemble yet: greedy may pick any completed trial, so all keep their weights (checkpoints go).
    assert report.candidates == ["c1", "c2", "c3", "c4"] and report.awaiting == ["c5", "c6", "c7"]
    assert _with_weights(trials) == ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "e1"]
    assert not any(trials[f"c{i}"].checkpoints.exists() for i in range(1, 8))
    assert not trials["p1"].weights_dir.exists()  # pruned trials are not in the pool
    assert any("no ensemble has considered yet" in line and "c5, c6, c7" in line for line in report.lines())
    # The ensemble drew from c1..c6 (c7 ended after it, say) and picked c1 and c6.
    _ensemble_json(
        layout,
        {
            "members": [{"trial_id": "c1"}, {"trial_id": "c6"}],
            "top_members": ["c1", "c2"],
            "pool": [f"c{i}" for i in range(1, 7)],
            "greedy_pool": "all",
        },
    )
    report = apply_retention(layout.root)
    assert report.awaiting == ["c7"]
    assert _with_weights(trials) == ["c1", "c2", "c3", "c4", "c6", "c7", "e1"]  # c5 went: considered, not picked
    (c5,) = [t for t in report.trials if t.trial_id == "c5"]
    assert c5.reason == "completed, rank 5 of 7: outside the best 4"


def test_pool_all_yields_to_an_explicit_keep_top(tmp_path):
    layout, trials = make_run(tmp_path / "run", spec=POOL_ALL)
    _ensemble_json(layout, {"members": [{"trial_id": "c6"}]})  # a file from before `pool`: its members
    report = apply_retention(layout.root, keep_top=2)  # `ferray prune --keep-top 2`
    assert report.awaiting == [] and _with_weights(trials) == ["c1", "c2", "c6", "e1"]


def test_pool_all_waits_only_for_trials_the_ensemble_could_use(tmp_path):
    layout, trials = make_run(tmp_path / "run", spec=POOL_ALL)
    trials["c6"].oof.unlink()  # no OOF predictions: no ensemble can draw on it
    report = apply_retention(layout.root)
    assert report.awaiting == ["c5", "c7"] and not trials["c6"].weights_dir.exists()


@pytest.mark.parametrize(
    "ensemble, kept",
    [
        ("ensemble: {top_k: 2, greedy: {pool: 3}}", 5),  # max(top_k, keep_top, 3) + margin 2
        ("ensemble: {top_k: 2, greedy: {pool: 6}}\nretention: {margin: 0}", 6),
        ("ensemble: {top_k: 2, methods: [mean, stacking]}", 4),  # no greedy: its pool does not count
    ],
)
def test_pool_of_n_or_no_greedy_is_a_rank_rule(tmp_path, ensemble, kept):
    layout, trials = make_run(tmp_path / "run", spec=POOL_ALL.replace("ensemble: {top_k: 2}", ensemble))
    report = apply_retention(layout.root)
    best = [f"c{i}" for i in range(1, kept + 1)]
    assert report.candidates == best and report.awaiting == []
    assert _with_weights(trials) == best + ["e1"]


def test_greedy_pool_in_the_spec_is_checked(tmp_path):
    path = tmp_path / "spec.yaml"
    for value, match in (
        (
            "al",
            (
                r"ensemble\.greedy\.pool: .*pool is 'al', but must be 'all' .*, 'top_k' .* or an "
                r"integer >= 1 .*; did you mean 'all'\?"
            ),
        ),
        ("0", r"ensemble\.greedy\.pool: .*pool is 0, but must be"),
        ("true", r"ensemble\.greedy\.pool: .*pool is True, but must be"),
    ):
        path.write_text(POOL_ALL.replace("ensemble: {top_k: 2}", f"ensemble: {{top_k: 2, greedy: {{pool: {value}}}}}"))
        with pytest.raises(ConfigError, match=match):
            load_search_spec(path, check_backbones=False)
    path.write_text(POOL_ALL)
    spec = load_search_spec(path, check_backbones=False)
    assert spec.ensemble.greedy.pool == "all" and spec.ensemble.greedy_pool == "all"
    assert spec.retention.candidates(top_k=2, pool="all") == 4 and spec.retention.candidates(top_k=2, pool=9) == 11


def test_half_precision_weights_halve_the_bytes_and_still_load(tmp_path):
    from ferray.training import load_fold_models
    from ferray.training.weights import load_weights, read_weights_meta

    layout, trials = make_run(tmp_path / "run", retention="retention: {half_precision_weights: true}\n")
    c1 = trials["c1"]
    before = [_logits(m(torch.ones(2, 1, 16, 16))).detach() for m in load_fold_models(c1)]
    size = c1.weights(0).stat().st_size
    report = apply_retention(layout.root)
    assert c1.weights(0).stat().st_size < 0.6 * size
    tensors = load_weights(c1.weights(0))
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    assert read_weights_meta(c1.weights(0))["precision"] == "float16"
    after = [_logits(m(torch.ones(2, 1, 16, 16))).detach() for m in load_fold_models(c1)]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)
    assert report.bytes > 0 and apply_retention(layout.root).trials == []  # converted once


def _float_dtypes(trial: TrialLayout) -> set[torch.dtype]:
    from ferray.training.weights import load_weights

    return {t.dtype for f in sorted(trial.weights_dir.glob("*.safetensors")) for t in load_weights(f).values()} - {
        torch.int64
    }


def test_half_precision_candidates_leave_the_members_and_unconsidered_trials_float32(tmp_path):
    from ferray.run.weights import WeightsMeta
    from ferray.training.weights import read_weights_meta

    layout, trials = make_run(tmp_path / "run", retention="retention: {half_precision_candidates: true}\n")
    apply_retention(layout.root)  # no ensemble yet: nobody is known to be only a candidate
    assert all(_float_dtypes(trials[t]) == {torch.float32} for t in ("c1", "c2", "c3", "c4"))
    _ensemble_json(layout, {"members": [{"trial_id": "c1"}], "top_members": ["c1", "c2"], "pool": ["c1", "c2", "c3"]})
    apply_retention(layout.root)
    assert _float_dtypes(trials["c1"]) == {torch.float32}  # the member: what the bundle exports
    assert _float_dtypes(trials["c2"]) == _float_dtypes(trials["c3"]) == {torch.float16}  # considered, not chosen
    assert _float_dtypes(trials["c4"]) == {torch.float32}  # not considered yet: a later ensemble may choose it
    meta = WeightsMeta.from_dict(read_weights_meta(trials["c2"].weights(0)))
    assert (
        meta.precision == "float16"
        and WeightsMeta.from_dict(read_weights_meta(trials["c1"].weights(0))).precision is None
    )


def test_disabled_policy_is_applied_only_on_request(tmp_path):
    layout, trials = make_run(tmp_path / "run", retention="retention: {enabled: false}\n")
    before = tree(layout.root)
    skipped = apply_retention(layout.root)
    assert skipped.skipped and tree(layout.root) == before
    assert "retention.enabled is false" in skipped.lines()[0]
    assert apply_retention(layout.root, force=True).trials  # `ferray prune`


def test_pruned_weights_kept_on_request(tmp_path):
    layout, trials = make_run(tmp_path / "run", retention="retention: {keep_pruned_weights: true}\n")
    apply_retention(layout.root)
    assert [p.name for p in trials["p1"].checkpoint_epochs()] == ["epoch_0001"]


# -- resume and retry ----------------------------------------------------------------------------


def test_errored_trial_retry_continues_from_its_last_checkpoint(run):
    layout, trials = run
    apply_retention(layout.root)
    assert retry_notes(layout.root, ["e1"]) == ["e1: continues after epoch 3 (its last checkpoint, epoch_0003)"]
    state = load_fold_state(trials["e1"].fold_checkpoint(trials["e1"].checkpoints / "epoch_0003", 1))
    assert state["trainer"]["epoch"] == 3


def test_errored_trial_without_its_checkpoint_restarts_from_epoch_1_and_says_so(tmp_path):
    layout, trials = make_run(tmp_path / "run", retention="retention: {keep_errored_checkpoint: false}\n")
    apply_retention(layout.root)
    e1 = trials["e1"]
    # No list left either: Train starts the retried trial afresh instead of failing on a
    # checkpoint its list names but the folder lacks.
    assert not e1.checkpoints.exists() and not e1.weights_dir.exists()
    (note,) = retry_notes(layout.root, ["e1"])
    assert note.startswith("e1: restarts from epoch 1: the retention policy removed its checkpoints")
    assert "keep_errored_checkpoint: false" in note and "lost" in note


def test_cleaned_trial_replays_its_reports_when_restarted(run):
    layout, trials = run
    apply_retention(layout.root)
    history = ended_history(trials["c5"])  # a driver that died before Tune recorded the end
    assert [r["epoch"] for r in history] == [1, 2] and history[-1]["final"] is True
    assert ended_history(trials["e1"]) is None  # errored: resumes from its checkpoint
    assert ended_history(trials["r1"]) is None
    record = json.loads(trials["c5"].retention.read_text())
    assert record["state"] == "COMPLETED" and "weights" in record["removed"] and "checkpoints" in record["removed"]


def test_resume_accepts_a_changed_retention_section(tmp_path):
    from ferray.run.manifest import read_manifest, write_manifest
    from ferray.search._resume import check_resumable
    from ferray.training import load_data, make_fold_plan

    root = tmp_path / "run"
    root.mkdir()
    layout = RunLayout(root)
    layout.spec.write_text(SPEC)
    spec = load_search_spec(layout.spec)
    plan = make_fold_plan(spec.base_config(), load_data(spec.base_config()))
    plan.save(layout.folds)
    layout.study.write_bytes(b"")
    write_manifest(root, spec, spec_path=None, experiment=str(root), trials=4)
    doc = read_manifest(root)
    del doc["spec"]["retention"]  # a run from before the section existed
    layout.manifest.write_text(json.dumps(doc))
    layout.spec.write_text(SPEC + "retention: {keep_top: 9}\n")
    assert check_resumable(root, echo=lambda s: None).spec.retention.keep_top == 9
    layout.spec.write_text(SPEC.replace("trials: 12", "trials: 13"))
    with pytest.raises(ConfigError, match="budget.trials: 12 -> 13"):
        check_resumable(root, echo=lambda s: None)


# -- the spec section and the CLI ------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, match",
    [
        ("retention: {keep_topp: 3}\n", r"retention\.keep_topp.*keep_top"),
        ("retention: {margin: -1}\n", r"retention\.margin"),
        ("retention: {keep_top: 0}\n", r"retention\.keep_top"),
    ],
)
def test_spec_retention_section_is_checked(tmp_path, section, match):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + section)
    with pytest.raises(ConfigError, match=match):
        load_search_spec(path, check_backbones=False)


def test_spec_retention_defaults(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    r = load_search_spec(path, check_backbones=False).retention
    assert (
        r.enabled,
        r.keep_top,
        r.margin,
        r.half_precision_weights,
        r.half_precision_candidates,
        r.keep_pruned_weights,
        r.keep_errored_checkpoint,
    ) == (True, None, 2, False, False, False, True)
    assert r.candidates(top_k=5) == 7 and r.candidates(top_k=5, keep_top=1) == 1


def _prune(argv: list[str]) -> int:
    import argparse

    from ferray.search._prune_cli import add_commands

    parser = argparse.ArgumentParser(prog="ferray")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_prune_cli_dry_run_then_prune(run, capsys):
    layout, _ = run
    before = tree(layout.root)
    assert _prune(["prune", str(layout.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert tree(layout.root) == before
    assert out.startswith("dry run: nothing is changed") and "c7 (completed, rank 7 of 7: outside the best 4)" in out
    assert _prune(["prune", str(layout.root), "--keep-top", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["candidates"] == ["c1", "c2", "c3"] and doc["bytes"] > 0 and not doc["dry_run"]
    assert not RunLayout(layout.root).trial("c4").weights_dir.exists()


# -- the sweep's callback ------------------------------------------------------------------------


def test_callback_cleans_trials_as_they_end(tmp_path):
    from types import SimpleNamespace

    from ferray.search.callbacks import (
        ResultsCallback,
        RetentionCallback,
        background_writer,
    )

    layout, trials = make_run(tmp_path / "run", running=("c1", "c5"))
    results = ResultsCallback(layout.results, max_epochs=2, resume=True)
    spec = load_search_spec(layout.spec, check_backbones=False)
    cb = RetentionCallback(
        layout.root, spec.retention, top_k=2, results=results, metric="accuracy", mode="max", settle_s=3600
    )
    trial = SimpleNamespace(trial_id="c5", config={}, last_result={"epoch": 2, "metric": 0.7, "final": True})
    results.on_trial_complete(0, [], trial)
    cb.on_trial_complete(0, [], trial)
    background_writer().flush()
    assert not trials["c5"].checkpoints.exists()
    assert trials["c5"].weights_dir.is_dir()  # rank 4 of the 6 completed so far: among the best 4
    assert trials["c2"].checkpoints.exists()  # ended in an earlier session: left for the end
    trial = SimpleNamespace(trial_id="c1", config={}, last_result={"epoch": 2, "metric": 0.9, "final": True})
    results.on_trial_complete(0, [], trial)
    cb.on_trial_complete(0, [], trial)
    background_writer().flush()
    assert not trials["c1"].checkpoints.exists()
    assert not trials["c5"].weights_dir.exists()  # pushed out of the best 4 by c1
    results.on_experiment_end([])
    cb.on_experiment_end([])
    assert not trials["c2"].checkpoints.exists() and not trials["p1"].checkpoints.exists()
    assert len(trials["r1"].checkpoint_epochs()) == 3  # stopped: ferray resume continues it
    disk = get_status(layout.root, disk=True)["disk"]
    assert disk["cleaned_trials"] == 9 and disk["removed_bytes"] > 0


def test_callback_keeps_greedy_pools_weights_for_the_ensemble(tmp_path):
    from types import SimpleNamespace

    from ferray.search.callbacks import ResultsCallback, RetentionCallback, background_writer

    layout, trials = make_run(tmp_path / "run", spec=POOL_ALL, running=("c1", "c5"))
    results = ResultsCallback(layout.results, max_epochs=2, resume=True)
    spec = load_search_spec(layout.spec, check_backbones=False)
    cb = RetentionCallback(
        layout.root,
        spec.retention,
        top_k=2,
        results=results,
        metric="accuracy",
        mode="max",
        settle_s=3600,
        pool=spec.ensemble.greedy_pool,
    )
    for tid, metric in (("c5", 0.7), ("c1", 0.9)):
        trial = SimpleNamespace(trial_id=tid, config={}, last_result={"epoch": 2, "metric": metric, "final": True})
        results.on_trial_complete(0, [], trial)
        cb.on_trial_complete(0, [], trial)
    results.on_experiment_end([])
    cb.on_experiment_end([])
    background_writer().flush()
    assert not trials["c5"].checkpoints.exists()
    assert _with_weights(trials) == ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "e1"]  # c5-c7: awaiting the ensemble
