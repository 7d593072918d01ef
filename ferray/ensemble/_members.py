"""The candidates of a run's ensemble: the top finished trials, greedy's pool, their aligned predictions.

:func:`select_members` ranks a run's trials as ``ferray status`` does (best epoch's fold
mean) and takes the best ``top``, which every method may combine; :func:`select_pool` widens
them to the trials greedy selection draws from (``ensemble.greedy.pool``); :func:`load_members`
reads their ``oof.parquet`` and ``holdout.parquet``, checks they share one dataset and fold
plan, and lines their rows up into arrays an ensemble method takes, with the rows' groups from
the run's fold plan (``folds.parquet``) for grouped inner folds.

With a latency budget (``ensemble.max_latency_ms``), a member costs what the bundle runs for
it (:func:`member_latency`): its trial's ``latency_ms`` (batch 1, measured on the trained
model at the trial's end) times its fold models, which the bundle's member averages
(:class:`ferray.export._graph.FoldMean` runs each of them on every image). The top trials are
the best whose costs fit the budget together; greedy's pool holds only trials that fit it alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ferray.data import FoldPlan
from ferray.errors import ConfigError, DataError
from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.predictions import META_KEY, Predictions, read_predictions
from ferray.run.status import get_status

__all__ = [
    "Members",
    "select_members",
    "select_pool",
    "load_members",
    "run_status",
    "has_weights",
    "member_latency",
    "BUDGET_KEY",
]

#: The spec key of the ensemble's latency budget (named in errors).
BUDGET_KEY = "ensemble.max_latency_ms"


@dataclass
class Members:
    """Aligned predictions of an ensemble's members (member order: best trial first).

    Attributes:
        trials: the members' summaries from :func:`ferray.run.get_status` (``trial_id``,
            ``state``, ``metric``, ``params``, ...).
        class_names: the classes, in column order.
        meta: the first member's OOF file metadata (``k``, ``data_fingerprint``, ``tta``).
        rows, ids, folds, labels: the OOF rows (sorted by ``rows``), their ids, outer folds
            and labels.
        oof: ``(n_members, n_rows, n_classes)`` OOF probabilities.
        holdout_rows, holdout_ids, holdout_labels: the holdout rows, sorted (may be empty).
        holdout: ``(n_members, n_holdout, n_classes)``: each member's mean over its fold models.
        oof_au, holdout_au: the same for AU probabilities when every member has them, else ``None``.
        groups: the OOF rows' groups in the run's fold plan (:attr:`ferray.data.FoldPlan.groups`:
            a subject joined with its duplicate clusters), which the inner cross-validation
            keeps whole; ``None`` when the plan grouped nothing or stored no groups.
    """

    trials: list[dict]
    class_names: list[str]
    meta: dict
    rows: np.ndarray
    ids: np.ndarray
    folds: np.ndarray
    labels: np.ndarray
    oof: np.ndarray
    holdout_rows: np.ndarray
    holdout_ids: np.ndarray
    holdout_labels: np.ndarray
    holdout: np.ndarray
    oof_au: np.ndarray | None = None
    holdout_au: np.ndarray | None = None
    groups: np.ndarray | None = None

    @property
    def trial_ids(self) -> list[str]:
        return [t["trial_id"] for t in self.trials]

    def __len__(self) -> int:
        return len(self.trials)

    def take(self, index: Sequence[int]) -> Members:
        """The members at positions ``index`` (in that order), the rows unchanged.

        >>> ranked = pool.take(range(3))  # doctest: +SKIP
        """
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1 or not len(index):
            raise ValueError("Members.take needs at least one position")
        return replace(
            self,
            trials=[self.trials[i] for i in index],
            oof=self.oof[index],
            holdout=self.holdout[index],
            oof_au=None if self.oof_au is None else self.oof_au[index],
            holdout_au=None if self.holdout_au is None else self.holdout_au[index],
        )


def run_status(run_dir: str | os.PathLike) -> tuple[RunLayout, dict]:
    """The run's layout and :func:`ferray.run.get_status`; ``ConfigError`` for a folder that is no run."""

    run = RunLayout(Path(run_dir))
    if not run.root.is_dir():
        raise ConfigError(f"{run.root}: no such run directory")
    if not run.spec.is_file():
        raise ConfigError(
            f"{run.root}: not a ferray run directory (no {RunLayout.SPEC}); pass the folder "
            "`ferray search` printed as its run directory"
        )
    if not run.results.is_file():
        raise DataError(
            f"{run.root}: no {RunLayout.RESULTS} yet: no trial has reported; ensemble a run once trials have finished"
        )
    return run, get_status(run.root, intervals=False)


def has_weights(trial: TrialLayout) -> bool:
    """Whether a trial folder holds model weights (``weights/fold_<i>.safetensors``) to export."""
    return trial.weights_dir.is_dir() and any(trial.weights_dir.glob("fold_*.safetensors"))


def _fold_models(run: RunLayout, trial_id: str) -> int | None:
    """How many fold models the bundle runs for a trial: its weight files, else its OOF file's ``k``."""
    layout = run.trial(trial_id)
    if has_weights(layout):
        return len(list(layout.weights_dir.glob("fold_*.safetensors")))
    import pyarrow.parquet as pq

    meta = json.loads((pq.read_schema(layout.oof).metadata or {}).get(META_KEY, b"{}"))
    k = meta.get("k")
    return int(k) if isinstance(k, int) and k > 0 else None


def member_latency(run: RunLayout, trial: dict) -> dict:
    """A trial's cost as an ensemble member: ``{"latency_ms", "fold_models", "member_latency_ms"}``.

    ``latency_ms`` is the trial's batch-1 ms per image (``results.parquet``, ``None`` when not
    measured); ``member_latency_ms`` is that times ``fold_models``, as the member runs them
    one after another.
    """
    ms = trial.get("latency_ms")
    k = _fold_models(run, trial["trial_id"])
    total = float(ms) * k if isinstance(ms, (int, float)) and math.isfinite(ms) and k else None
    return {"latency_ms": ms, "fold_models": k, "member_latency_ms": total}


def _with_latency(run: RunLayout, trials: list[dict]) -> list[dict]:
    return [{**t, **member_latency(run, t)} for t in trials]


def _within_budget(run: RunLayout, usable: list[dict], top: int, budget: float, echo) -> list[dict]:
    """The best ``top`` of ``usable`` whose member latencies fit ``budget`` together (rank order kept)."""
    usable = _with_latency(run, usable)
    timed = [t for t in usable if t["member_latency_ms"] is not None]
    if not timed:
        raise DataError(
            f"{BUDGET_KEY} is {budget:g} ms, but no finished trial has a measured latency_ms in "
            f"{run.results} ({len(usable)} trial(s) with predictions); trials measure it after their last epoch"
        )
    chosen, spent, over = [], 0.0, []
    for t in timed:
        if len(chosen) < top and spent + t["member_latency_ms"] <= budget:
            chosen.append(t)
            spent += t["member_latency_ms"]
        elif len(chosen) < top:
            over.append(t)
    if not chosen:
        fast = min(timed, key=lambda t: t["member_latency_ms"])
        raise ConfigError(
            f"{BUDGET_KEY} is {budget:g} ms, but no finished trial fits it: the fastest, {fast['trial_id']}, "
            f"runs {fast['member_latency_ms']:.3g} ms per image at batch 1 ({fast['latency_ms']:.3g} ms x "
            f"{fast['fold_models']} fold models); raise the budget to at least {fast['member_latency_ms']:.3g}"
        )
    if echo is not None:
        untimed = [t["trial_id"] for t in usable if t["member_latency_ms"] is None]
        echo(
            f"latency budget {budget:g} ms: {len(chosen)} trial(s) fit together ({spent:.3g} ms)"
            + (
                "; skipped " + ", ".join(f"{t['trial_id']} ({t['member_latency_ms']:.3g} ms)" for t in over)
                if over
                else ""
            )
            + (f"; no measured latency: {', '.join(untimed)}" if untimed else "")
        )
    return chosen


def _ranked(run: RunLayout, status: dict, include_pruned: bool) -> tuple[list[dict], list[dict], list[str]]:
    """``(finished, usable, skipped)``: finished trials best first, those of them with both
    prediction files (each with its 1-based ``rank`` among them), the others' descriptions."""
    states = ("COMPLETED", "PRUNED") if include_pruned else ("COMPLETED",)
    finished = [t for t in status["trials"] if t["state"] in states and t["metric"] is not None]
    usable, skipped = [], []
    for t in finished:
        layout = run.trial(t["trial_id"])
        lacking = [f for f, p in ((layout.OOF, layout.oof), (layout.HOLDOUT, layout.holdout)) if not p.is_file()]
        if lacking:
            skipped.append(f"{t['trial_id']} (no {' or '.join(lacking)})")
        else:
            usable.append({**t, "rank": len(usable) + 1})
    return finished, usable, skipped


def select_members(
    run: RunLayout,
    status: dict,
    top: int,
    *,
    include_pruned: bool = False,
    top_source: str | None = None,
    max_latency_ms: float | None = None,
    echo=None,
) -> list[dict]:
    """The ``top`` best finished trials that left ``oof.parquet`` and ``holdout.parquet``.

    Finished means COMPLETED (and PRUNED with ``include_pruned``) with a fold-mean metric.
    Each returned summary carries its ``rank`` among those trials (1: the best) and its
    cost (:func:`member_latency`). With ``max_latency_ms``, the trials are taken best first
    while their member latencies fit the budget together, skipping those that would exceed
    it: fewer than ``top`` when no more fit.

    Raises:
        DataError: no trial qualifies (every trial errored, or none left prediction files),
            or a budget is set and no trial has a measured latency.
        ConfigError: fewer trials qualify than ``top`` (without a budget), or no trial fits
            the budget (naming the fastest trial's latency).
    """
    trials = status["trials"]
    counts = ", ".join(f"{n} {s.lower()}" for s, n in status["counts"].items()) or "no trials"
    finished, usable, skipped = _ranked(run, status, include_pruned)
    if skipped and echo is not None:
        echo(f"skipping {len(skipped)} finished trial(s) without predictions: {', '.join(skipped)}")
    if not usable:
        if not finished:
            if trials and all(t["state"] == "ERROR" for t in trials):
                why = f"every trial errored ({counts}); see `ferray status {run.root}` for the errors"
            elif not include_pruned and status["counts"].get("PRUNED"):
                why = (
                    f"no trial completed ({counts}); pruned trials count with --include-pruned "
                    "(include_pruned=True) if they left predictions"
                )
            else:
                why = f"no trial has finished yet ({counts})"
        else:
            why = (
                f"no finished trial has {TrialLayout.OOF} and {TrialLayout.HOLDOUT}: {', '.join(skipped)}; "
                "trials write them after their last epoch"
            )
        raise DataError(f"{run.root}: nothing to ensemble: {why}")
    if max_latency_ms is not None:
        return _within_budget(run, usable, top, max_latency_ms, echo)
    if top > len(usable):
        where = top_source or f"top = {top}"
        # Pruned trials stop before their final predictions; only those that left them would help.
        pruned = (
            []
            if include_pruned
            else [
                t
                for t in trials
                if t["state"] == "PRUNED"
                and t["metric"] is not None
                and run.trial(t["trial_id"]).oof.is_file()
                and run.trial(t["trial_id"]).holdout.is_file()
            ]
        )
        raise ConfigError(
            f"{where} asks for {top} members, but the run has {len(usable)} finished trial(s) with predictions "
            f"({', '.join(t['trial_id'] for t in usable)}); ask for at most {len(usable)}"
            + (f" (or add --include-pruned: {len(pruned)} pruned trial(s) with predictions)" if pruned else "")
        )
    return _with_latency(run, usable[:top])


def select_pool(
    run: RunLayout,
    status: dict,
    top: list[dict],
    pool: str | int,
    *,
    include_pruned: bool = False,
    max_latency_ms: float | None = None,
    echo=None,
) -> list[dict]:
    """The trials greedy selection draws from: ``top`` (:func:`select_members`) and, beyond them,
    the finished trials with predictions whose weights are still on disk, best first.

    ``pool`` is ``ensemble.greedy.pool``: ``"top_k"`` (``top`` alone), ``"all"`` (every such
    trial) or an integer N (those among the best N, never fewer than ``top``). A trial beyond
    ``top`` whose weights are gone (the retention policy removed them) is left out: greedy may
    only pick a trial the export stage can load, and the policy keeps the weights of
    ``pool: all`` until an ensemble has considered them (:mod:`ferray.run.retention`).
    With ``max_latency_ms``, a trial beyond ``top`` joins only when its member latency alone
    fits the budget (greedy selection keeps the members' sum within it).
    """
    if pool == "top_k":
        return list(top)
    _, usable, _ = _ranked(run, status, include_pruned)
    ids = {t["trial_id"] for t in top}
    limit = len(usable) if pool == "all" else max(int(pool), len(top))
    extra, gone, slow = [], [], []
    for t in usable[:limit]:
        if t["trial_id"] not in ids:
            if not has_weights(run.trial(t["trial_id"])):
                gone.append(t)
                continue
            t = {**t, **member_latency(run, t)}
            cost = t["member_latency_ms"]
            fits = max_latency_ms is None or (cost is not None and cost <= max_latency_ms)
            (extra if fits else slow).append(t)
    if echo is not None:
        echo(
            f"greedy's pool (ensemble.greedy.pool: {pool}): {len(top) + len(extra)} trial(s), the top {len(top)} "
            f"and {len(extra)} more with weights on disk"
            + (
                f"; left out {len(gone)} without weights (removed by the retention policy): "
                + ", ".join(t["trial_id"] for t in gone)
                if gone
                else ""
            )
            + (
                f"; left out {len(slow)} over the latency budget or without a measured latency: "
                + ", ".join(t["trial_id"] for t in slow)
                if slow
                else ""
            )
        )
    return list(top) + extra


def _sorted_unique(pred: Predictions, where: str) -> np.ndarray:
    order = np.argsort(pred.rows, kind="stable")
    rows = pred.rows[order]
    if len(rows) > 1 and np.any(rows[1:] == rows[:-1]):
        dup = int(rows[1:][rows[1:] == rows[:-1]][0])
        raise DataError(f"{where}: row {dup} appears more than once; an OOF file has one prediction per row")
    return order


def load_members(run: RunLayout, trials: list[dict]) -> Members:
    """Read and align the members' predictions, and their rows' groups from the run's fold plan.

    Raises:
        DataError: a file cannot be read, or the members do not share one dataset, class
            list, fold plan or set of rows (the message names the trials), or the run's
            fold plan does not hold their rows.
    """
    if not trials:
        raise ValueError("load_members needs at least one trial")
    ids = [t["trial_id"] for t in trials]
    oofs = [read_predictions(run.trial(i).oof) for i in ids]
    holds = [read_predictions(run.trial(i).holdout) for i in ids]

    by_print: dict[str, list[str]] = {}
    for tid, p in zip(ids, oofs):
        by_print.setdefault(str(p.meta.get("data_fingerprint", "")), []).append(tid)
    if len(by_print) > 1:
        groups = "; ".join(f"data fingerprint {fp[:12] or '(none)'} for {', '.join(ts)}" for fp, ts in by_print.items())
        raise DataError(
            f"the members do not share one dataset and fold plan: {groups}. An ensemble combines "
            "trials of one sweep; ensemble each group on its own"
        )
    for tid, p in zip(ids[1:], oofs[1:]):
        if p.class_names != oofs[0].class_names:
            raise DataError(
                f"trial {tid} predicts classes {p.class_names}, but trial {ids[0]} predicts "
                f"{oofs[0].class_names}; members must share one class list"
            )

    ref = run.trial(ids[0]).oof
    order = _sorted_unique(oofs[0], str(ref))
    rows, folds = oofs[0].rows[order], oofs[0].folds[order]
    oof = np.empty((len(ids), len(rows), len(oofs[0].class_names)))
    au_all = all(p.au_probs is not None for p in oofs)
    oof_au = np.empty((len(ids), len(rows), oofs[0].au_probs.shape[1])) if au_all else None
    for m, (tid, p) in enumerate(zip(ids, oofs)):
        o = _sorted_unique(p, str(run.trial(tid).oof))
        if len(p) != len(rows) or not np.array_equal(p.rows[o], rows):
            raise DataError(
                f"trial {tid} has OOF predictions for {len(p)} rows, trial {ids[0]} for {len(rows)}"
                f"{'' if len(p) != len(rows) else ' (different rows)'}; members must cover the same rows"
            )
        diff = int(np.sum(p.folds[o] != folds))
        if diff:
            raise DataError(
                f"the members do not share one fold plan: trial {tid} puts {diff} OOF row(s) in a "
                f"different fold than trial {ids[0]}; ensemble trials of one sweep"
            )
        if not np.array_equal(p.labels[o], oofs[0].labels[order]):
            raise DataError(f"trial {tid}'s OOF labels differ from trial {ids[0]}'s for the same rows")
        oof[m] = p.probs[o]
        if oof_au is not None:
            oof_au[m] = p.au_probs[o]

    h_rows, h_ids, h_labels, _, _ = holds[0].row_means()
    holdout = np.empty((len(ids), len(h_rows), len(oofs[0].class_names)))
    h_au_all = au_all and len(h_rows) > 0 and all(h.au_probs is not None for h in holds)
    holdout_au = np.empty((len(ids), len(h_rows), holds[0].au_probs.shape[1])) if h_au_all else None
    for m, (tid, h) in enumerate(zip(ids, holds)):
        if h.class_names != oofs[0].class_names:
            raise DataError(
                f"{run.trial(tid).holdout}: classes {h.class_names} differ from the OOF file's {oofs[0].class_names}"
            )
        r, _, _, probs, au = h.row_means()
        if not np.array_equal(r, h_rows):
            raise DataError(
                f"trial {tid} has holdout predictions for {len(r)} rows, trial {ids[0]} for "
                f"{len(h_rows)}{'' if len(r) != len(h_rows) else ' (different rows)'}; "
                "members must share one holdout"
            )
        holdout[m] = probs
        if holdout_au is not None:
            holdout_au[m] = au
    oof_ids = oofs[0].ids[order]
    return Members(
        trials=list(trials),
        class_names=oofs[0].class_names,
        meta=dict(oofs[0].meta),
        rows=rows,
        ids=oof_ids,
        folds=folds,
        labels=oofs[0].labels[order],
        oof=oof,
        holdout_rows=h_rows,
        holdout_ids=h_ids,
        holdout_labels=h_labels,
        holdout=holdout,
        oof_au=oof_au,
        holdout_au=holdout_au,
        groups=_plan_groups(run, rows, oof_ids, folds),
    )


def _plan_groups(run: RunLayout, rows: np.ndarray, ids: np.ndarray, folds: np.ndarray) -> np.ndarray | None:
    """The groups of OOF ``rows`` in the run's fold plan, or ``None`` (no plan file, or no groups in it).

    Raises:
        DataError: the plan does not hold these rows with these ids and folds (the
            predictions are from another plan than the run's).
    """
    if not run.folds.is_file():
        return None
    plan = FoldPlan.load(run.folds)
    rows = np.asarray(rows, np.int64)
    where = f"{run.folds} ({len(plan.fold)} rows)"
    if len(rows) and rows.max() >= len(plan.fold):
        raise DataError(f"the members' OOF predictions name row {int(rows.max())}, beyond the fold plan {where}")
    if not np.array_equal(plan.ids[rows].astype(str), np.asarray(ids).astype(str)) or not np.array_equal(
        plan.fold[rows], folds
    ):
        raise DataError(
            f"the members' OOF rows do not match the fold plan {where}: other row ids or folds; "
            "the predictions belong to another sweep's plan"
        )
    return None if plan.groups is None else plan.groups[rows]
