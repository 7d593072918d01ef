"""``ferray ensemble RUN``: ensembles of a sweep's trials, fitted on their out-of-fold predictions.

:func:`build_ensembles` picks each method's candidates, fits every requested method on their
OOF probabilities (never on holdout labels), scores each method honestly on the OOF rows,
applies it to the holdout rows, chooses one and writes ``RUN/ensemble/``.

The candidates: stacking, mean and vote combine the ``top`` best finished trials by fold
mean (``ensemble.top_k``, ``--top``). Greedy selection chooses members for what they add to
the running average, not for their rank, so it draws from a wider pool
(``ensemble.greedy.pool``, :func:`~ferray.ensemble.select_pool`): by default every completed
trial whose weights are still on disk, the ``top`` included. A weaker trial whose mistakes
differ from the leaders' can earn weight that way. The pool is limited to trials with weights
because whatever greedy picks must be exportable; the retention policy keeps a completed
trial's weights until an ensemble has considered it (``pool`` in ``ensemble.json``) and
prunes the non-members afterwards (:mod:`ferray.run.retention`).

* ``ensembles.parquet``: one row per trial a method used (the ``top`` and every trial greedy
  picked) and per method with OOF and holdout accuracy, macro-F1 (each with its bootstrap 95%
  interval, ``*_low``/``*_high``) and log-loss, and the gain over the best single trial;
* ``ensemble.json``: ``members``, the chosen method's members (trial ids, rank, params,
  fold-mean metric, scores): what export, distillation, report and explain load;
  ``methods``: each method's ``members`` (trial ids, aligned with its ``weights`` where it
  has any), settings and weights or stacking coefficients; ``top_members`` (the ``top``
  trials), ``pool`` (the trials greedy drew from) and ``greedy_pool`` (its setting); the best
  method by each OOF metric, the chosen one and ``comparison``: the chosen ensemble against
  the best single trial (``baseline``), the difference of OOF and holdout accuracy and
  macro-F1 with a paired bootstrap 95% interval;
  ``inner_groups``: whether the inner folds were grouped, over how many groups and rows;
  ``max_latency_ms``: the latency budget the ensemble was chosen under (``None``: none) and
  ``latency_ms``: its measured batch-1 latency, the sum of its members' ``member_latency_ms``
  (each the trial's ``latency_ms`` times its ``fold_models``; ``None`` when one is unmeasured);
* ``oof.parquet`` and ``holdout.parquet``: the chosen ensemble's predictions in the format of
  :mod:`ferray.run.predictions` (holdout: one row per holdout row, ``fold`` -1), the soft
  targets of ``ferray distill``. The OOF file holds the predictions the table scores: made
  without the row's own label (stacking's inner cross-validation; greedy cross-fitted on the
  same kind of inner folds; mean and vote as they are), so they are as honest as the members'
  own OOF predictions. The holdout file applies the method fitted on all OOF rows.

The inner folds keep the fold plan's groups whole (a subject's images and near-duplicate
copies, :attr:`ferray.data.FoldPlan.groups`), as the outer folds do: a learned method is never
scored on a copy of a face whose label it was fitted on, which would make the scores that
choose the method optimistic. A plan without groups gives inner folds stratified by label.

The folder is written under a temporary name and renamed: a reader sees the previous
ensemble or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.validation import has_fit_parameter

from ferray._io import json_safe
from ferray.ensemble import _builtin  # noqa: F401  (the built-in methods, registered)
from ferray.ensemble._base import EnsembleMethod
from ferray.ensemble._cv import INNER_FOLDS, cross_val_proba
from ferray.ensemble._members import Members, load_members, run_status, select_members, select_pool
from ferray.ensemble._registry import ENSEMBLE_METHODS, make_ensemble
from ferray.errors import ConfigError, DataError, FerrayError
from ferray.metrics import accuracy, bootstrap_metrics, log_loss, macro_f1, paired_bootstrap_metrics
from ferray.run.layout import EnsembleLayout, RunLayout
from ferray.run.predictions import Predictions, write_predictions
from ferray.run.sections import check_greedy_pool
from ferray.run.spec import read_run_spec

__all__ = ["build_ensembles", "EnsembleReport", "fit_methods", "compare_to_best_single", "CHOSEN_BY"]

#: The OOF metric that chooses the ensemble whose predictions are written (lower is better;
#: ties go to the higher OOF accuracy, then to the method listed first). Log-loss is a proper
#: scoring rule: the chosen probabilities are the distillation stage's soft targets, so how
#: well they are calibrated counts, not only their argmax.
CHOSEN_BY = "oof_log_loss"

_METRICS = ("accuracy", "macro_f1", "log_loss")
_CHOSEN_BY_TEXT = {"oof_log_loss": "OOF log-loss"}
#: Metrics with bootstrap intervals (``<split>_<metric>_low`` / ``_high`` in the table).
_CI_METRICS = ("accuracy", "macro_f1")
#: Bootstrap resamples and interval level of the table's intervals and of the comparison.
N_BOOT, LEVEL = 1000, 0.95


@dataclass
class MethodFit:
    """One fitted method: the estimator, its honest OOF and its holdout probabilities.

    ``trial_ids`` are its candidates, in the order fitted; :attr:`members` those it uses.
    """

    name: str
    estimator: EnsembleMethod
    oof: np.ndarray
    holdout: np.ndarray
    oof_source: str  # inner_cv (stacking), cross_fitted (other learned methods), direct (no labels used)
    trial_ids: list[str] = field(default_factory=list)

    @property
    def members(self) -> list[str]:
        """The trial ids the fitted method reads (greedy: those it picked), in candidate order."""
        return [self.trial_ids[i] for i in self.estimator.used_members()]


@dataclass
class EnsembleReport:
    """What :func:`build_ensembles` fitted and wrote.

    Attributes:
        run_dir: the run directory.
        path: its ``ensemble/`` folder (see :class:`ferray.run.layout.EnsembleLayout`).
        metric: the run's fold-mean metric, which ranked the trials.
        members: the chosen method's members (trial ids, best first): what export loads.
        methods: the methods fitted, in the order asked.
        table: the rows of ``ensembles.parquet`` (trials first, best first, then methods).
        best: the best method by each OOF metric: ``{"log_loss": ..., "accuracy": ..., "macro_f1": ...}``.
        chosen: the method whose predictions were written (the best by :data:`CHOSEN_BY`).
        chosen_by: :data:`CHOSEN_BY`.
        summary: the content of ``ensemble.json``.
        comparison: the chosen ensemble against the best single trial (``ensemble.json``'s
            ``comparison``): per split (``oof``, ``holdout``; ``None`` without holdout rows)
            and metric the difference with its paired bootstrap interval and a verdict.
        top_members: the ``top`` best trials by fold mean, which stacking, mean and vote combine.
        pool: the trials greedy selection drew from (``top_members`` first).
        method_members: each method's members (trial ids).
        baseline: the best single trial, which the gains and ``comparison`` are against.
    """

    run_dir: Path
    path: Path
    metric: str
    members: list[str]
    methods: list[str]
    table: list[dict]
    best: dict[str, str]
    chosen: str
    chosen_by: str = CHOSEN_BY
    summary: dict = field(default_factory=dict, repr=False)
    comparison: dict = field(default_factory=dict)
    top_members: list[str] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)
    method_members: dict[str, list[str]] = field(default_factory=dict)
    baseline: str = ""

    def row(self, name: str) -> dict:
        """The table row of a member (trial id) or method."""
        for r in self.table:
            if r["name"] == name:
                return r
        raise KeyError(f"no member or method {name!r} in the report; rows: {', '.join(r['name'] for r in self.table)}")

    def to_dict(self) -> dict:
        """JSON-ready (``ferray ensemble --json``)."""
        return json_safe(
            {
                "run_dir": str(self.run_dir),
                "path": str(self.path),
                "metric": self.metric,
                "members": self.members,
                "methods": self.methods,
                "top_members": self.top_members,
                "pool": self.pool,
                "method_members": self.method_members,
                "baseline": self.baseline,
                "best": self.best,
                "chosen": self.chosen,
                "chosen_by": self.chosen_by,
                "max_latency_ms": self.summary.get("max_latency_ms"),
                "latency_ms": self.summary.get("latency_ms"),
                "comparison": self.comparison,
                "table": self.table,
            }
        )

    def render(self):
        """A rich renderable: the table, the chosen method and where the files are."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        base = self.baseline or self.members[0]
        top = len(self.top_members) or len(self.members)
        pool = f", greedy from a pool of {len(self.pool)}" if len(self.pool) > top else ""
        table = Table(
            title=f"{Path(self.run_dir).name}: ensembles of the top {top} trials{pool} "
            f"(OOF scores cross-validated; [95% bootstrap interval]; gain vs the best single trial "
            f"{base})"
        )
        for col in (
            "",
            "member / method",
            "fold mean",
            "OOF acc",
            "OOF F1",
            "OOF log-loss",
            "holdout acc",
            "holdout F1",
            "holdout log-loss",
            "gain acc OOF / holdout",
        ):
            table.add_column(col, justify="left" if col in ("", "member / method") else "right")
        for r in self.table:
            mark = "*" if r["chosen"] else ""
            name = (
                f"{r['name']} #{r['rank']}"
                if r["kind"] == "member"
                else f"[bold]{r['name']}[/bold] ({r['members']} members)"
            )
            gain = f"{_fmt(r['gain_oof_accuracy'], signed=True)} / {_fmt(r['gain_holdout_accuracy'], signed=True)}"
            table.add_row(
                mark,
                name,
                _fmt(r["fold_mean"]),
                _fmt_ci(r, "oof_accuracy"),
                _fmt_ci(r, "oof_macro_f1"),
                _fmt(r["oof_log_loss"]),
                _fmt_ci(r, "holdout_accuracy"),
                _fmt_ci(r, "holdout_macro_f1"),
                _fmt(r["holdout_log_loss"]),
                gain if r["kind"] == "ensemble" else "",
            )
        best = ", ".join(f"{m.replace('_', '-')}: {n}" for m, n in self.best.items())
        lines = [
            Text(f"best by OOF {best}"),
            Text(
                f"chosen: {self.chosen} (lowest {_CHOSEN_BY_TEXT.get(self.chosen_by, self.chosen_by)}); "
                f"its predictions and the table are in {self.path}"
            ),
        ]
        lines += [Text(line) for line in comparison_lines(self.comparison)]
        return Group(table, *lines)


def _fmt(v: Any, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _fmt_ci(row: dict, key: str) -> str:
    """The value, and its interval on a second line (``-`` without rows)."""
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if _fmt(low) == "-" or _fmt(high) == "-":
        return _fmt(row[key])
    return f"{_fmt(row[key])}\n[{low:.3f}, {high:.3f}]"


def verdict(interval: dict) -> str:
    """What a paired interval of a difference says: a clear gain or loss only when it excludes 0."""
    if interval["low"] == interval["high"] == interval["value"] == 0:
        return "no difference (the same rows right and wrong)"
    if interval["low"] > 0:
        return "a clear gain"
    if interval["high"] < 0:
        return "a clear loss"
    return "not a clear gain" if interval["value"] >= 0 else "not a clear loss"


def comparison_lines(comparison: dict) -> list[str]:
    """``chosen stacking vs best single trial t03: +1.1 points [-0.4, +2.6] holdout accuracy (...): ...``."""
    if not comparison:
        return []
    lines = []
    for split, label in (("oof", "OOF"), ("holdout", "holdout")):
        ci = (comparison.get(split) or {}).get("accuracy")
        if ci is None:
            continue
        lines.append(
            f"chosen {comparison['ensemble']} vs best single trial {comparison['baseline']}: "
            f"{100 * ci['value']:+.1f} points [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] "
            f"{label} accuracy (paired bootstrap, {comparison['n_boot']} resamples): {ci['verdict']}"
        )
    return lines


def _scores(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    if len(y) == 0:
        return {m: float("nan") for m in _METRICS}
    return {
        "accuracy": accuracy(y, proba),
        "macro_f1": macro_f1(y, proba, num_classes=n_classes),
        "log_loss": log_loss(y, proba),
    }


def _resolve_methods(methods: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if methods is None:
        names = list(default)
    elif isinstance(methods, str):
        names = [m.strip() for m in methods.split(",") if m.strip()]
    else:
        names = [str(m) for m in methods]
    if "all" in names:
        names = [n for n in names if n != "all"] + list(ENSEMBLE_METHODS)
    if not names:
        raise ConfigError(f"no ensemble method given; valid methods: {', '.join(ENSEMBLE_METHODS)} or all")
    out: list[str] = []
    for n in names:
        if n not in ENSEMBLE_METHODS:
            make_ensemble(n)  # raises with the valid names and the nearest match
        if n not in out:
            out.append(n)
    return out


def _settings(name: str, cfg, seed: int) -> dict:
    """Settings of method ``name`` from the spec's ``ensemble`` section."""
    accepted = ENSEMBLE_METHODS[name]._get_param_names()
    settings: dict[str, Any] = {}
    if "seed" in accepted:
        settings["seed"] = seed
    if name == "greedy" and cfg is not None:
        settings["iterations"] = cfg.greedy.iterations
        settings["bags"] = cfg.greedy.bags
        settings["bag_fraction"] = cfg.greedy.bag_fraction
    return settings


def fit_methods(
    members: Members,
    methods: Sequence[str],
    *,
    settings: dict[str, dict] | None = None,
    seed: int = 0,
    echo: Callable[[str], Any] | None = None,
) -> list[MethodFit]:
    """Fit each method on the members' OOF probabilities; score it honestly; apply it to the holdout.

    A method's OOF probabilities, which the table scores and the chooser compares, never use
    a row's own label: stacking's come from its inner cross-validation (``oof_proba_``);
    another method that learns from labels (greedy) is cross-fitted on the same kind of
    stratified inner folds (:func:`~ferray.ensemble.cross_val_proba`, ``INNER_FOLDS`` folds,
    ``seed``); mean and vote learn nothing and are applied as they are. With
    ``members.groups`` (the fold plan's groups) both kinds of inner folds keep every group
    whole: a method whose ``fit`` takes ``groups`` (stacking) gets them, and so does the
    cross-fitting. The holdout probabilities come from the method fitted on all OOF rows;
    holdout labels are never read.
    """
    settings = settings or {}
    fits = []
    for name in methods:
        est = make_ensemble(name, **settings.get(name, {}))
        try:
            if members.groups is not None and has_fit_parameter(est, "groups"):
                est.fit(members.oof, members.labels, groups=members.groups)
            else:
                est.fit(members.oof, members.labels)
            if hasattr(est, "oof_proba_"):
                oof, source = est.oof_proba_, "inner_cv"
            elif est.learns_from_labels:
                oof, source = (
                    cross_val_proba(
                        est, members.oof, members.labels, inner_folds=INNER_FOLDS, seed=seed, groups=members.groups
                    ),
                    "cross_fitted",
                )
            else:
                oof, source = est.predict_proba(members.oof), "direct"
            hold = (
                est.predict_proba(members.holdout) if members.holdout.shape[1] else np.zeros((0, members.oof.shape[2]))
            )
        except FerrayError:
            raise
        except ValueError as exc:  # the run's predictions do not suit the method (e.g. too few rows)
            raise DataError(
                f"ensemble method {name!r} cannot be fitted on the members' OOF predictions: {exc}"
            ) from None
        fits.append(MethodFit(name, est, oof, hold, source, members.trial_ids))
        if echo is not None:
            s = _scores(members.labels, oof, members.oof.shape[2])
            echo(f"{name}: OOF accuracy {s['accuracy']:.4f}, log-loss {s['log_loss']:.4f} ({source})")
    return fits


def _table(
    members: Members, fits: list[MethodFit], seed: int = 0, trial_ids: Sequence[str] | None = None
) -> list[dict]:
    """Rows of ``members`` (those in ``trial_ids``; default all, best first), then of ``fits``."""
    n_classes = members.oof.shape[2]
    keep = None if trial_ids is None else set(trial_ids)
    rows = []
    for pos, (trial, oof, hold) in enumerate(zip(members.trials, members.oof, members.holdout), start=1):
        if keep is not None and trial["trial_id"] not in keep:
            continue
        rows.append(
            {
                "kind": "member",
                "name": trial["trial_id"],
                "rank": trial.get("rank", pos),
                "members": 1,
                "fold_mean": trial.get("metric"),
                "state": trial.get("state"),
                **_prefixed(members, oof, hold, n_classes, seed),
            }
        )
    for f in fits:
        rows.append(
            {
                "kind": "ensemble",
                "name": f.name,
                "rank": None,
                "members": len(f.members),
                "fold_mean": None,
                "state": None,
                **_prefixed(members, f.oof, f.holdout, n_classes, seed),
            }
        )
    base = rows[0]
    for r in rows:
        for part in ("oof", "holdout"):
            # Positive is better for both: accuracy up, log-loss down.
            r[f"gain_{part}_accuracy"] = r[f"{part}_accuracy"] - base[f"{part}_accuracy"]
            r[f"gain_{part}_log_loss"] = base[f"{part}_log_loss"] - r[f"{part}_log_loss"]
    return rows


def _prefixed(members: Members, oof: np.ndarray, hold: np.ndarray, n_classes: int, seed: int = 0) -> dict:
    out: dict = {}
    for part, y, proba in (("oof", members.labels, oof), ("holdout", members.holdout_labels, hold)):
        out.update({f"{part}_{k}": v for k, v in _scores(y, proba, n_classes).items()})
        ci = bootstrap_metrics(y, proba, num_classes=n_classes, n_boot=N_BOOT, level=LEVEL, seed=seed)
        for m in _CI_METRICS:
            out[f"{part}_{m}_low"], out[f"{part}_{m}_high"] = ci[m].low, ci[m].high
    return out


def compare_to_best_single(members: Members, fit: MethodFit, *, seed: int = 0) -> dict:
    """The chosen ensemble against the best single trial (the first member) on the same rows.

    Per split (``oof``, and ``holdout`` when it has rows; else ``None``) and metric
    (``accuracy``, ``macro_f1``): ``{"value", "low", "high", "verdict"}``, the difference
    ensemble minus trial (positive: the ensemble is better) with its paired bootstrap
    interval (:func:`ferray.metrics.paired_bootstrap_metrics`, seeded). A gain is clear
    only when the interval excludes 0.
    """

    n_classes = members.oof.shape[2]
    out: dict = {
        "ensemble": fit.name,
        "baseline": members.trials[0]["trial_id"],
        "method": "paired bootstrap",
        "n_boot": N_BOOT,
        "level": LEVEL,
        "seed": seed,
    }
    for part, y, ens, single in (
        ("oof", members.labels, fit.oof, members.oof[0]),
        ("holdout", members.holdout_labels, fit.holdout, members.holdout[0]),
    ):
        if len(y) == 0:
            out[part] = None
            continue
        diffs = paired_bootstrap_metrics(y, ens, single, num_classes=n_classes, n_boot=N_BOOT, level=LEVEL, seed=seed)
        out[part] = {}
        for m in _CI_METRICS:
            ci = diffs[m]._asdict()
            out[part][m] = {**ci, "verdict": verdict(ci)}
    return out


def _choose(table: list[dict]) -> tuple[str, dict[str, str]]:
    """The chosen method and the best by each OOF metric, from the table's method rows (marked ``chosen``)."""
    scored = [r for r in table if r["kind"] == "ensemble"]
    best = {
        "log_loss": min(scored, key=lambda r: r["oof_log_loss"])["name"],
        "accuracy": max(scored, key=lambda r: r["oof_accuracy"])["name"],
        "macro_f1": max(scored, key=lambda r: r["oof_macro_f1"])["name"],
    }
    # min() keeps the first of equal keys: ties go to the method listed first.
    chosen = min(scored, key=lambda r: (r["oof_log_loss"], -r["oof_accuracy"]))["name"]
    for r in table:
        r["chosen"] = r["kind"] == "ensemble" and r["name"] == chosen
    return chosen, best


def _write_predictions(folder: Path, members: Members, fit: MethodFit) -> None:
    """The chosen ensemble's predictions; ``members``: the candidates it was fitted on.

    AU probabilities (multi-task runs) are the plain mean of the members the method uses.
    """

    meta = {
        "class_names": members.class_names,
        "k": members.meta.get("k"),
        "data_fingerprint": members.meta.get("data_fingerprint", ""),
        "tta": members.meta.get("tta", []),
        "ensemble": fit.name,
        "members": fit.members,
    }
    used = fit.estimator.used_members()
    oof_au = None if members.oof_au is None else members.oof_au[used].mean(axis=0)
    hold_au = None if members.holdout_au is None else members.holdout_au[used].mean(axis=0)
    layout = EnsembleLayout(folder)
    write_predictions(
        Predictions(members.rows, members.ids, members.folds, members.labels, fit.oof, oof_au, {**meta, "kind": "oof"}),
        layout.oof,
    )
    write_predictions(
        Predictions(
            members.holdout_rows,
            members.holdout_ids,
            np.full(len(members.holdout_rows), -1),
            members.holdout_labels,
            fit.holdout,
            hold_au,
            {**meta, "kind": "holdout"},
        ),
        layout.holdout,
    )


def _write_table(rows: list[dict], path: Path, metric: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(rows[0])
    table = pa.table({c: pa.array([json_safe(r[c]) for r in rows]) for c in columns})
    table = table.replace_schema_metadata({b"ferray_ensembles": json.dumps({"fold_mean_metric": metric}).encode()})
    pq.write_table(table, path)


def build_ensembles(
    run_dir: str | os.PathLike,
    *,
    top: int | None = None,
    methods: str | Sequence[str] | None = None,
    include_pruned: bool = False,
    seed: int | None = None,
    pool: str | int | None = None,
    max_latency_ms: float | None = None,
    echo: Callable[[str], Any] | None = print,
) -> EnsembleReport:
    """Ensemble a sweep's trials and write ``RUN/ensemble/`` (see the module docstring).

    Args:
        run_dir: a sweep's run directory.
        top: the best finished trials by fold mean (as ``ferray status`` ranks them) that
            stacking, mean and vote combine, and that greedy's pool always holds; default
            ``ensemble.top_k`` of the run's spec.
        methods: names of :data:`~ferray.ensemble.ENSEMBLE_METHODS`, a comma-separated
            string, or ``"all"``; default ``ensemble.methods`` of the spec.
        include_pruned: also consider PRUNED trials (those that left prediction files).
        seed: greedy tie-breaks, stacking's inner folds and the cross-fitted scores; default
            ``ensemble.seed`` of the spec.
        pool: the trials greedy selection draws from: ``"all"`` (every finished trial with
            predictions whose weights are on disk), ``"top_k"`` (the ``top``) or an integer N
            (the best N, never fewer than ``top``); default ``ensemble.greedy.pool`` of the spec.
        max_latency_ms: the latency budget: the chosen members together run within this many
            ms per image at batch 1, each member costing its trial's ``latency_ms`` times its
            fold models (:func:`~ferray.ensemble._members.member_latency`). The top trials are
            the best that fit together, greedy's pool only trials that fit alone, and greedy
            adds no member that would exceed it. Default ``ensemble.max_latency_ms`` of the spec.
        echo: progress lines (``None``: silent).

    Returns:
        An :class:`EnsembleReport`; the chosen method is the one with the lowest OOF
        log-loss (:data:`CHOSEN_BY`), scored without the rows' own labels.

    Raises:
        ConfigError: not a run directory, an unknown method, a bad ``pool`` or
            ``max_latency_ms``, more members asked for than finished trials with predictions,
            or no trial within the latency budget.
        DataError: no trial finished with predictions (every trial errored, ...), or the
            candidates do not share one dataset, fold plan or set of rows.

    >>> report = build_ensembles("runs/quickstart-20261130-120000", top=3)  # doctest: +SKIP
    >>> report.chosen, report.members, report.row(report.chosen)["holdout_accuracy"]  # doctest: +SKIP
    """
    say = echo or (lambda _s: None)
    run, status = run_status(run_dir)
    cfg = read_run_spec(run.root).ensemble
    top_source = None
    if top is None:
        top, top_source = cfg.top_k, f"ensemble.top_k = {cfg.top_k} ({run.spec})"
    elif isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top = {top!r}, but must be an integer >= 1 (members of the ensemble)")
    if seed is None:
        seed = cfg.seed
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed = {seed!r}, but must be an integer >= 0")
    if pool is None:
        pool = cfg.greedy.pool
    else:
        try:
            pool = check_greedy_pool(pool)
        except ValueError as exc:
            raise ConfigError(f"greedy {exc}") from None
    if max_latency_ms is None:
        max_latency_ms = cfg.max_latency_ms
    elif isinstance(max_latency_ms, bool) or not isinstance(max_latency_ms, (int, float)) or not max_latency_ms > 0:
        raise ConfigError(f"max_latency_ms = {max_latency_ms!r}, but must be a number of ms > 0")
    names = _resolve_methods(methods, cfg.methods)

    trials = select_members(
        run,
        status,
        top,
        include_pruned=include_pruned,
        top_source=top_source,
        max_latency_ms=max_latency_ms,
        echo=say,
    )
    pool_trials = (
        select_pool(run, status, trials, pool, include_pruned=include_pruned, max_latency_ms=max_latency_ms, echo=say)
        if "greedy" in names
        else list(trials)
    )
    candidates = load_members(run, pool_trials)  # the top first, in rank order
    say(
        f"top {top} ({status['metric']}, fold mean): "
        + ", ".join(f"{t['trial_id']} {t['metric']:.4f}" for t in trials)
        + f"; {candidates.oof.shape[1]} OOF rows, {candidates.holdout.shape[1]} holdout rows"
    )
    inner_groups = _inner_groups(candidates)
    if not inner_groups["grouped"]:
        candidates.groups = None
    say(f"inner folds: {inner_groups['text']}")
    ranked = candidates if len(pool_trials) == len(trials) else candidates.take(range(len(trials)))
    settings = {n: _settings(n, cfg, seed) for n in names}
    if max_latency_ms is not None and "greedy" in settings:
        settings["greedy"]["member_costs"] = [t["member_latency_ms"] for t in pool_trials]
        settings["greedy"]["max_cost"] = float(max_latency_ms)
    fitted_on = {n: candidates if n == "greedy" else ranked for n in names}
    fits = [fit_methods(fitted_on[n], [n], settings=settings, seed=seed, echo=say)[0] for n in names]
    used = {t["trial_id"] for t in trials}.union(*(f.members for f in fits))
    table = _table(candidates, fits, seed, trial_ids=used)
    chosen, best = _choose(table)
    chosen_fit = next(f for f in fits if f.name == chosen)
    comparison = compare_to_best_single(ranked, chosen_fit, seed=seed)
    by_name = {r["name"]: r for r in table}
    by_id = {t["trial_id"]: t for t in pool_trials}
    summary = json_safe(
        {
            "run": run.name,
            "metric": status["metric"],
            "mode": status["mode"],
            "class_names": candidates.class_names,
            "data_fingerprint": candidates.meta.get("data_fingerprint", ""),
            "k": candidates.meta.get("k"),
            "top": top,
            "include_pruned": include_pruned,
            "seed": seed,
            "inner_folds": INNER_FOLDS,
            "inner_groups": {k: v for k, v in inner_groups.items() if k != "text"},
            "members": [_member_entry(by_id[tid], by_name[tid]) for tid in chosen_fit.members],
            "max_latency_ms": max_latency_ms,
            "latency_ms": _ensemble_latency([by_id[tid] for tid in chosen_fit.members]),
            "top_members": [t["trial_id"] for t in trials],
            "greedy_pool": pool if "greedy" in names else None,
            "pool": [t["trial_id"] for t in pool_trials],
            "methods": {
                f.name: {
                    **f.estimator.to_dict(f.trial_ids),
                    "oof_source": f.oof_source,
                    **{k: by_name[f.name][k] for k in _score_keys()},
                }
                for f in fits
            },
            "best": best,
            "chosen": chosen,
            "chosen_by": CHOSEN_BY,
            "baseline": trials[0]["trial_id"],
            "comparison": comparison,
            "files": {"table": EnsembleLayout.TABLE, "oof": EnsembleLayout.OOF, "holdout": EnsembleLayout.HOLDOUT},
        }
    )

    tmp = run.root / f".{RunLayout.ENSEMBLE}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        layout = EnsembleLayout(tmp)
        _write_table(table, layout.table, status["metric"])
        _write_predictions(tmp, fitted_on[chosen], chosen_fit)
        from ferray._io import atomic_write_json, replace_folder

        atomic_write_json(layout.summary, summary)
        replace_folder(tmp, run.ensemble)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(
        f"chosen: {chosen} ({len(chosen_fit.members)} member(s): {', '.join(chosen_fit.members)}"
        + (f"; {summary['latency_ms']:.3g} ms per image at batch 1" if summary["latency_ms"] is not None else "")
        + (f", budget {max_latency_ms:g} ms" if max_latency_ms is not None else "")
        + f"); wrote {run.ensemble}"
    )
    return EnsembleReport(
        run_dir=run.root,
        path=run.ensemble,
        metric=status["metric"],
        members=list(chosen_fit.members),
        methods=names,
        table=table,
        best=best,
        chosen=chosen,
        summary=summary,
        comparison=summary["comparison"],
        top_members=summary["top_members"],
        pool=summary["pool"],
        method_members={f.name: f.members for f in fits},
        baseline=trials[0]["trial_id"],
    )


def _member_entry(trial: dict, row: dict) -> dict:
    """A member of ``ensemble.json``: the trial's rank, state, fold mean, params and scores."""
    return {
        "trial_id": trial["trial_id"],
        "rank": trial.get("rank"),
        "state": trial["state"],
        "fold_mean": trial["metric"],
        "fold_mean_std": trial.get("metric_std"),
        "best_epoch": trial.get("best_epoch"),
        "params": trial.get("params", {}),
        "latency_ms": trial.get("latency_ms"),
        "fold_models": trial.get("fold_models"),
        "member_latency_ms": trial.get("member_latency_ms"),
        **{k: row[k] for k in _score_keys()},
    }


def _ensemble_latency(members: list[dict]) -> float | None:
    """The members' batch-1 latencies summed (ms per image), or ``None`` when one was not measured."""
    costs = [m.get("member_latency_ms") for m in members]
    return None if any(c is None for c in costs) else float(sum(costs))


def _inner_groups(members: Members) -> dict:
    """How the inner folds split the OOF rows: grouped by the fold plan's groups, or by label only."""
    n = members.oof.shape[1]
    if members.groups is None:
        return {
            "grouped": False,
            "groups": None,
            "rows": n,
            "text": f"{INNER_FOLDS}, stratified by label ({n} rows; the run's fold plan holds no groups)",
        }
    sizes = np.unique(members.groups, return_counts=True)[1]
    if len(sizes) < 2 * INNER_FOLDS:
        # A few large groups cannot fill stratified inner folds; label-only is the honest fallback.
        return {
            "grouped": False,
            "groups": int(len(sizes)),
            "rows": n,
            "text": f"{INNER_FOLDS}, stratified by label ({n} rows; the fold plan's {len(sizes)} groups are "
            f"too few to fill {INNER_FOLDS} grouped folds)",
        }
    return {
        "grouped": True,
        "groups": int(len(sizes)),
        "rows": n,
        "text": f"{INNER_FOLDS}, stratified by label and grouped as the fold plan groups the rows "
        f"(subjects, duplicate clusters): {len(sizes)} groups over {n} rows, "
        f"{int(sizes[sizes > 1].sum())} rows in groups of two or more",
    }


def _score_keys() -> list[str]:
    keys = []
    for part in ("oof", "holdout"):
        for m in _METRICS:
            keys.append(f"{part}_{m}")
            if m in _CI_METRICS:
                keys += [f"{part}_{m}_low", f"{part}_{m}_high"]
    return keys
