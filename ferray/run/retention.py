"""The retention policy: what a run directory keeps of each trial once the trial ended.

A trial writes an epoch checkpoint (model, optimiser moments, EMA, RNG: about three times the
model's size per fold) every epoch, and its evaluated weights once, at its end
(``weights/fold_<i>.safetensors``: what the ensemble, distillation and export stages read).
Resume needs the last checkpoint of a trial that may continue; nothing needs the checkpoints
of a trial that ended. The rules (settings: the spec's ``retention:`` section,
:class:`~ferray.run.RetentionConfig`):

=============  ==============================================================================
trial state    what stays (metrics, ``results.parquet`` rows and prediction files always stay)
=============  ==============================================================================
RUNNING        its last complete epoch checkpoint (Ray Train, ``num_to_keep=1``); never
STOPPED        touched here: ``ferray resume`` continues these trials from that checkpoint
COMPLETED      ``weights/`` while among the best ``max(ensemble.top_k, keep_top) + margin``
               completed trials by fold mean (or a member of ``ensemble/ensemble.json``,
               or awaiting greedy selection's pool, below), as float16 with
               ``half_precision_weights`` (or, with ``half_precision_candidates``, once
               an ensemble considered the trial and did not choose it); no checkpoints
PRUNED         nothing (``keep_pruned_weights: true``: its weights and last checkpoint)
ERROR          its last registered checkpoint, so ``ferray resume --retry-errored`` continues
               it (``keep_errored_checkpoint: false``: nothing; a retry starts from epoch 1)
=============  ==============================================================================

Greedy ensemble selection may pick any completed trial, not only the best by fold mean
(``ensemble.greedy.pool``, :class:`~ferray.run.GreedyConfig`), and what it picks must be
exportable, so the weights of its pool must outlive the trials' ends:

* ``pool: all``: a completed trial with predictions keeps its weights until an ensemble has
  considered it (``ensemble.json`` names it in ``pool``); after the ensemble, the rule above
  prunes the non-members. A sweep's ensemble runs when it ends, so the cost is the pool's
  weights until then; a resumed sweep's new trials wait for the next ensemble the same way.
  ``ferray prune --keep-top N`` overrides this wait (then greedy draws from what is left:
  the ensemble only ever draws from trials whose weights are on disk);
* ``pool: N``: the best ``max(ensemble.top_k, keep_top, N) + margin`` keep their weights;
* ``pool: top_k``, or greedy not among ``ensemble.methods``: the rank rule alone.

Checkpoint folders Ray Train never registered (a copy cut short by a kill) go with the rest.
Before removing a trial's checkpoints the policy writes ``<trial>/retention.json`` (what went,
and the trial's reports): should a driver that died before Tune recorded the trial's end restart
it, the trial says its reports again and ends, instead of failing on missing checkpoints. Every
cleaning appends a line to ``<run>/retention.jsonl``, which ``ferray status`` sums
(:func:`ferray.run.disk.disk_usage`); :mod:`ferray.run.trial_record` reads a trial's record back.

The sweep applies the policy on its driver as trials end (a Tune callback; deletions run on the
callbacks' background writer); :func:`apply_retention` (``ferray prune``) applies it to a run
on request.

>>> report = apply_retention("runs/quickstart-20261130-120000", dry_run=True)  # doctest: +SKIP
>>> print("\\n".join(report.lines()))                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ferray._io import append_line, atomic_write, atomic_write_json
from ferray.errors import ConfigError
from ferray.run.disk import directory_size, path_size
from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.sections import RetentionConfig
from ferray.run.spec import SearchSpec, read_run_spec
from ferray.run.status import get_status
from ferray.run.trial_record import RECORD_FORMAT, checkpoint_history, read_record

__all__ = [
    "apply_retention",
    "plan_retention",
    "awaiting_ensemble",
    "clean_trials",
    "RetentionReport",
    "TrialCleanup",
    "ENDED_STATES",
]

logger = logging.getLogger(__name__)

#: States the policy acts on; RUNNING, STOPPED and PENDING trials may still continue.
ENDED_STATES = ("COMPLETED", "PRUNED", "ERROR")


@dataclass
class TrialCleanup:
    """What the policy removes (or would remove) from one trial folder.

    Attributes:
        trial_id, state: the trial and its state in ``results.parquet``.
        reason: why, in words (``"completed, rank 9 of 12: outside the best 5"``).
        remove: files and folders to delete (absolute paths).
        convert: weights files to store as float16.
        files, bytes: what ``remove`` holds (and, after :func:`clean_trials`, what went).
        saved_bytes: bytes the float16 conversion saves (an estimate until it ran).
        snapshot: Ray Train's checkpoint list trimmed to the checkpoint that stays, to write
            before deleting the others (errored trials of runs with older checkpoints).
        keeps: what stays of the trial's weights and checkpoints, in words.
    """

    trial_id: str
    state: str
    reason: str
    remove: list[Path] = field(default_factory=list)
    convert: list[Path] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    saved_bytes: int = 0
    snapshot: dict | None = None
    keeps: str = ""

    @property
    def empty(self) -> bool:
        return not self.remove and not self.convert

    def describe(self, root: Path) -> str:
        parts = [_rel(p, root) + ("" if p.suffix else "/") for p in self.remove]  # folders have no suffix
        if self.convert:
            parts.append(f"{len(self.convert)} weights file(s) to float16")
        return f"{self.trial_id} ({self.reason}): {', '.join(parts)} - {_mb(self.bytes + self.saved_bytes)}" + (
            f"; keeps {self.keeps}" if self.keeps else ""
        )


@dataclass
class RetentionReport:
    """What :func:`apply_retention` removed (or, with ``dry_run``, would remove)."""

    run_dir: Path
    dry_run: bool
    trials: list[TrialCleanup]
    candidates: list[str]
    size_before: int
    size_after: int
    skipped: str | None = None
    awaiting: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(t.files for t in self.trials)

    @property
    def bytes(self) -> int:
        """Bytes removed (or to remove), float16 savings included."""
        return sum(t.bytes + t.saved_bytes for t in self.trials)

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "dry_run": self.dry_run,
            "skipped": self.skipped,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "files": self.files,
            "bytes": self.bytes,
            "candidates": self.candidates,
            "awaiting": self.awaiting,
            "trials": [
                {
                    "trial_id": t.trial_id,
                    "state": t.state,
                    "reason": t.reason,
                    "remove": [_rel(p, self.run_dir) for p in t.remove],
                    "convert": [_rel(p, self.run_dir) for p in t.convert],
                    "files": t.files,
                    "bytes": t.bytes + t.saved_bytes,
                    "keeps": t.keeps,
                }
                for t in self.trials
            ],
        }

    def lines(self) -> list[str]:
        """A human summary, one line per cleaned trial, then the totals."""
        if self.skipped:
            return [f"{self.run_dir}: nothing removed ({self.skipped})"]
        verb = "would remove" if self.dry_run else "removed"
        out = [f"  {t.describe(self.run_dir)}" for t in self.trials]
        wait = []
        if self.awaiting:
            wait.append(
                f"weights kept for {len(self.awaiting)} completed trial(s) no ensemble has considered yet "
                f"(ensemble.greedy.pool: all; `ferray ensemble {self.run_dir}` draws from them, then "
                "the non-members go; --keep-top N prunes them now): " + ", ".join(self.awaiting)
            )
        if not self.trials:
            out.append(
                f"{self.run_dir}: nothing to remove ({_mb(self.size_before)}; every ended trial already "
                "holds only what the policy keeps)"
            )
            return out + wait
        after = (
            f", {_mb(self.size_after)} left"
            if not self.dry_run
            else f"; the run directory would go from {_mb(self.size_before)} to about {_mb(self.size_after)}"
        )
        out.append(f"{verb} {_mb(self.bytes)} in {self.files} file(s) from {len(self.trials)} trial(s){after}")
        if self.candidates:
            out.append(
                f"weights kept for the {len(self.candidates)} best completed trial(s): " + ", ".join(self.candidates)
            )
        return out + wait


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _rel(p: Path, root: Path) -> str:
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return str(p)


# -- what stays ----------------------------------------------------------------------------------


def _trial_ids(items) -> set[str]:
    """The trial ids of a JSON list of ids or ``{"trial_id": ...}`` entries (anything else: none)."""
    out = set()
    for m in items if isinstance(items, list) else []:
        tid = m.get("trial_id") if isinstance(m, dict) else m
        if isinstance(tid, str):
            out.add(tid)
    return out


def _ensemble_trials(run: RunLayout) -> tuple[set[str], set[str] | None]:
    """``(members, considered)`` of ``ensemble/ensemble.json``; ``(set(), None)`` without one.

    ``members`` are the chosen ensemble's (weighted or not), what export and distillation
    load. ``considered`` are the trials the ensemble drew from: its ``pool`` and
    ``top_members`` (a file from before they were written: its members).
    """
    try:
        doc = json.loads(run.ensemble_files.summary.read_text())
    except (OSError, ValueError):
        return set(), None
    if not isinstance(doc, dict):
        return set(), None
    members = _trial_ids(doc.get("members"))
    return members, members | _trial_ids(doc.get("pool")) | _trial_ids(doc.get("top_members"))


def awaiting_ensemble(run_dir: str | os.PathLike, trials: list[dict], pool: str | int | None) -> list[str]:
    """Completed trials whose weights wait for greedy selection (``pool: all``), best first.

    Those with a fold mean and prediction files that no ensemble has considered yet (see the
    module docstring); none unless ``pool`` is ``"all"``.
    """
    if pool != "all":
        return []
    run = RunLayout(Path(run_dir))
    _, considered = _ensemble_trials(run)
    out = []
    for t in trials:
        tid = t["trial_id"]
        if t.get("state") != "COMPLETED" or t.get("metric") is None or (considered and tid in considered):
            continue
        trial = run.trial(tid)
        if trial.oof.is_file() and trial.holdout.is_file():
            out.append(tid)
    return out


def _checkpoint_plan(trial: TrialLayout) -> tuple[list[Path], dict | None, str | None]:
    """Checkpoint folders to remove so that only the last registered one stays.

    Returns ``(remove, trimmed_snapshot, latest)``: unregistered epoch folders (a copy cut
    short) and, when Train's list can be trimmed, the older registered ones; the trimmed list
    to write first (``None``: leave the list as it is).
    """
    # Function-local: ferray.runtime.compat imports Ray, and this package must import without it.
    from ferray.runtime.compat import TRAIN_SNAPSHOT, read_train_snapshot, snapshot_checkpoints, trim_train_snapshot

    epochs = trial.checkpoint_epochs()
    if not epochs:
        return [], None, None
    snapshot_file = trial.checkpoints / TRAIN_SNAPSHOT
    if not snapshot_file.exists():
        return list(epochs), None, None  # nothing was ever registered: every folder is partial
    doc = read_train_snapshot(snapshot_file)
    if doc is None:  # another Ray's format: keep what it may name
        return [], None, None
    listed, latest = snapshot_checkpoints(doc)
    orphans = [p for p in epochs if p.name not in listed]
    older = [p for p in epochs if p.name in listed and p.name != latest]
    if not older or latest is None:
        return orphans, None, latest
    trimmed = trim_train_snapshot(doc, {latest})
    if trimmed is None:
        return orphans, None, latest
    return orphans + older, trimmed, latest


def _weights_files(trial: TrialLayout) -> list[Path]:
    return sorted(trial.weights_dir.glob("fold_*.safetensors")) if trial.weights_dir.is_dir() else []


def _half_candidates(trial: TrialLayout) -> tuple[list[Path], int]:
    """Weights files holding float32 tensors, and the bytes storing them as float16 saves."""
    from safetensors import safe_open

    out, saved = [], 0
    for path in _weights_files(trial):
        try:
            with safe_open(str(path), framework="pt") as f:
                floats = 0
                for key in f.keys():
                    sl = f.get_slice(key)
                    if sl.get_dtype() in ("F32", "F64"):
                        n = 1
                        for d in sl.get_shape():
                            n *= d
                        floats += n * (4 if sl.get_dtype() == "F32" else 8) // 2
        except Exception:
            continue
        if floats:
            out.append(path)
            saved += floats
    return out, saved


def _plan_trial(
    trial: TrialLayout, state: str, *, keep_weights: bool, half: bool, reason: str, cfg: RetentionConfig
) -> TrialCleanup:
    """What goes from one ended trial; ``half``: its kept weights are stored as float16."""
    plan = TrialCleanup(trial.trial_id, state, reason)
    checkpoints = trial.checkpoints
    weights = _weights_files(trial)
    keep_checkpoint = (
        (state == "ERROR" and cfg.keep_errored_checkpoint)
        or (state == "PRUNED" and cfg.keep_pruned_weights)
        or (state == "COMPLETED" and keep_weights and not weights)
    )  # a run from before weights/ files
    kept: list[str] = []
    if keep_checkpoint:
        remove, plan.snapshot, latest = _checkpoint_plan(trial)
        plan.remove += remove
        if latest is not None:
            kept.append(f"checkpoint {latest}")
    elif checkpoints.exists():
        plan.remove.append(checkpoints)
    if keep_weights:
        if weights:
            kept.append("weights/")
            if half and state != "ERROR":  # a retry may end without rewriting them
                plan.convert, plan.saved_bytes = _half_candidates(trial)
    elif trial.weights_dir.exists():
        plan.remove.append(trial.weights_dir)
    for p in plan.remove:
        files, size = path_size(p)
        plan.files += files
        plan.bytes += size
    plan.keeps = ", ".join(kept)
    return plan


def plan_retention(
    run_dir: str | os.PathLike,
    trials: list[dict],
    cfg: RetentionConfig,
    *,
    top_k: int,
    keep_top: int | None = None,
    only: Iterable[str] | None = None,
    pool: str | int | None = None,
) -> tuple[list[TrialCleanup], list[str]]:
    """What the policy removes from each ended trial (nothing is changed).

    Args:
        run_dir: the run directory.
        trials: trial summaries, best first (:func:`ferray.run.get_status`'s ``trials``).
        cfg: the :class:`~ferray.run.RetentionConfig`.
        top_k: the spec's ``ensemble.top_k``.
        keep_top: keep the weights of exactly this many best completed trials (``ferray prune
            --keep-top``) instead of ``max(top_k, cfg.keep_top[, pool]) + cfg.margin``; the
            weights awaiting the ensemble (``pool: all``) are not kept then.
        only: act on these trial ids only (a sweep: the trials whose end has settled).
        pool: the spec's ``ensemble.greedy_pool`` (``None``: greedy is not among the methods).

    Returns:
        ``(cleanups, candidates)``: one :class:`TrialCleanup` per trial with something to
        remove, and the best completed trials that keep their weights by rank, best first.
    """
    run = RunLayout(Path(run_dir))
    n = cfg.candidates(top_k, keep_top, pool)
    completed = [t["trial_id"] for t in trials if t.get("state") == "COMPLETED" and t.get("metric") is not None]
    candidates = completed[:n]
    members, considered = _ensemble_trials(run)
    awaiting = set(awaiting_ensemble(run.root, trials, pool)) if keep_top is None else set()
    protected = set(candidates) | members | awaiting
    rank = {tid: i + 1 for i, tid in enumerate(completed)}
    only = set(only) if only is not None else None
    out = []
    for t in trials:
        tid, state = t["trial_id"], t.get("state")
        if state not in ENDED_STATES or (only is not None and tid not in only):
            continue
        trial = run.trial(tid)
        if not trial.root.is_dir():
            continue
        if state == "COMPLETED":
            keep = tid in protected
            if tid in candidates:
                reason = f"completed, rank {rank[tid]}"
            elif tid in members:
                reason = "completed, an ensemble member"
            elif keep:
                reason = (
                    f"completed, rank {rank[tid]} of {len(completed)}: in greedy selection's pool, "
                    "awaiting the ensemble (ensemble.greedy.pool: all)"
                )
            elif tid in rank:
                reason = f"completed, rank {rank[tid]} of {len(completed)}: outside the best {n}"
            else:
                reason = "completed without a finite fold mean"
        elif state == "PRUNED":
            keep = cfg.keep_pruned_weights or tid in protected
            reason = "pruned" + (" (keep_pruned_weights)" if cfg.keep_pruned_weights else "")
        else:
            keep = cfg.keep_errored_checkpoint
            reason = "errored" + ("" if keep else " (keep_errored_checkpoint: false)")
        # Candidates only: trials an ensemble drew from and did not choose (what the bundle
        # exports keeps the precision it was trained in).
        half = cfg.half_precision_weights or (
            cfg.half_precision_candidates and tid in (considered or ()) and tid not in members
        )
        plan = _plan_trial(trial, state, keep_weights=keep, half=half, reason=reason, cfg=cfg)
        if not plan.empty:
            out.append(plan)
    return out, candidates


# -- doing it ------------------------------------------------------------------------------------


def _to_half(path: Path) -> int:
    """Store a weights file's float tensors as float16 (atomically); the bytes saved."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save

    before = path.stat().st_size
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    limit = torch.finfo(torch.float16).max
    for key, t in tensors.items():
        # A tensor beyond float16's range (a large running variance) stays float32.
        if t.is_floating_point() and t.dtype != torch.float16 and (t.numel() == 0 or float(t.abs().max()) <= limit):
            tensors[key] = t.to(torch.float16).contiguous()
    meta["precision"] = json.dumps("float16")
    atomic_write(path, save(tensors, metadata=meta))
    return before - path.stat().st_size


def _delete(path: Path) -> tuple[int, int]:
    files, size = path_size(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return 0, 0
    return files, size


def clean_trials(run_dir: str | os.PathLike, cleanups: list[TrialCleanup], *, source: str) -> list[TrialCleanup]:
    """Carry out planned cleanups (see :func:`plan_retention`); each trial's record first.

    ``files``/``bytes``/``saved_bytes`` are updated to what actually went. A failure on one
    trial is logged and the others go on.
    """
    run = RunLayout(Path(run_dir))
    done = []
    for plan in cleanups:
        trial = run.trial(plan.trial_id)
        try:
            record = read_record(trial)
            if plan.state in ("COMPLETED", "PRUNED") and trial.checkpoints in plan.remove and not record.get("history"):
                record["history"] = checkpoint_history(trial)
            removed = list(dict.fromkeys([*record.get("removed", []), *(_rel(p, trial.root) for p in plan.remove)]))
            record.update(
                {
                    "format": RECORD_FORMAT,
                    "state": plan.state,
                    "reason": plan.reason,
                    "removed": removed,
                    "keeps": plan.keeps,
                    "time": time.time(),
                }
            )
            if plan.convert:
                record["weights_precision"] = "float16"
            atomic_write_json(trial.retention, record)
            if plan.snapshot is not None:
                from ferray.runtime.compat import TRAIN_SNAPSHOT

                atomic_write(trial.checkpoints / TRAIN_SNAPSHOT, json.dumps(plan.snapshot).encode())
            plan.files = plan.bytes = 0
            for path in plan.remove:
                files, size = _delete(path)
                plan.files += files
                plan.bytes += size
            plan.saved_bytes = sum(_to_half(p) for p in plan.convert if p.exists())
        except Exception as exc:
            logger.warning("retention: could not clean trial %s: %s", plan.trial_id, exc)
            continue
        append_line(
            run.retention,
            json.dumps(
                {
                    "time": time.time(),
                    "trial_id": plan.trial_id,
                    "state": plan.state,
                    "source": source,
                    "files": plan.files,
                    "bytes": plan.bytes + plan.saved_bytes,
                    "removed": [_rel(p, trial.root) for p in plan.remove],
                    "converted": len(plan.convert),
                }
            ),
        )
        done.append(plan)
    return done


def _spec_of(run: RunLayout) -> SearchSpec:
    if not run.root.is_dir():
        raise ConfigError(f"{run.root}: no such run directory")
    if not run.spec.is_file():
        raise ConfigError(
            f"{run.root}: not a ferray run directory (no {RunLayout.SPEC}); pass the folder "
            "`ferray search` printed as its run directory"
        )
    return read_run_spec(run.root)


def apply_retention(
    run_dir: str | os.PathLike, *, keep_top: int | None = None, dry_run: bool = False, force: bool = False
) -> RetentionReport:
    """Apply the run's retention policy (its spec's ``retention:`` section) to its ended trials.

    Running and stopped trials are left alone (a sweep may be continuing them); metrics and
    prediction files always stay, so the ensemble stage can still rank and combine every trial.

    Args:
        run_dir: a sweep's run directory.
        keep_top: the number of best completed trials that keep their weights (instead of
            ``max(ensemble.top_k, retention.keep_top) + retention.margin``, and instead of
            keeping greedy selection's pool for the ensemble). Members of the run's ensemble
            (``ensemble/ensemble.json``) always keep theirs.
        dry_run: change nothing; the report says what would go.
        force: apply it even when the spec says ``retention.enabled: false`` (``ferray prune``).

    Raises:
        ConfigError: not a run directory, or ``keep_top`` < 1.
    """
    run = RunLayout(Path(run_dir).absolute())
    if keep_top is not None and keep_top < 1:
        raise ConfigError(f"--keep-top {keep_top}: the number of trials that keep their weights must be >= 1")
    spec = _spec_of(run)
    size = directory_size(run.root)
    if not spec.retention.enabled and not force:
        return RetentionReport(
            run.root, dry_run, [], [], size, size, skipped="retention.enabled is false in the run's spec"
        )
    if not run.results.is_file():
        return RetentionReport(run.root, dry_run, [], [], size, size, skipped=f"no {RunLayout.RESULTS} yet")
    trials = get_status(run.root, intervals=False)["trials"]
    pool = spec.ensemble.greedy_pool
    cleanups, candidates = plan_retention(
        run.root, trials, spec.retention, top_k=spec.ensemble.top_k, keep_top=keep_top, pool=pool
    )
    awaiting = (
        [] if keep_top is not None else [t for t in awaiting_ensemble(run.root, trials, pool) if t not in candidates]
    )
    if dry_run:
        after = size - sum(c.bytes + c.saved_bytes for c in cleanups)
        return RetentionReport(run.root, True, cleanups, candidates, size, after, awaiting=awaiting)
    done = clean_trials(run.root, cleanups, source="prune")
    return RetentionReport(run.root, False, done, candidates, size, directory_size(run.root), awaiting=awaiting)
