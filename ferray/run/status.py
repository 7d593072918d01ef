"""``ferray status RUN``: the trials of a sweep, best first, and the best configuration.

Reads only files of the run directory (``results.parquet``, ``spec.yaml``, each trial's
``metrics.json``, and the best trial's prediction files), so it works while the sweep runs,
after it ended, and on a machine without Ray.

Scores come with 95% bootstrap intervals (:func:`ferray.metrics.bootstrap_metrics`,
1,000 resamples, seed 0): a trial's ``metrics.json`` holds them for its holdout rows (and may
for its OOF rows and the holdout rows without a training duplicate); the best trial's missing
OOF and holdout intervals are computed from its ``oof.parquet`` and ``holdout.parquet``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ferray.errors import ConfigError, DataError
from ferray.metrics import bootstrap_metrics
from ferray.run.disk import disk_usage
from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.pareto import pareto_front
from ferray.run.predictions import read_predictions
from ferray.run.results import STATES, read_results
from ferray.run.sections import Objective
from ferray.run.warm_start import COLD, read_warm_start

__all__ = ["get_status", "render_status", "summarise_trials", "trial_intervals"]

#: Splits with intervals: ``metrics.json`` key ``<split>_ci`` -> ``{"accuracy"|"macro_f1": {value, low, high}}``.
INTERVAL_SPLITS = ("oof", "holdout", "holdout_clean")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarise_trials(
    rows: list[dict], metric: str = "accuracy", mode: str = "max", objectives: list[Objective] | None = None
) -> list[dict]:
    """One summary per trial from results rows, best first (best epoch's fold mean).

    Trials without a finite fold mean (errored before their first epoch) come last. Each has
    ``latency_ms``: its trained model's batch-1 latency (from its last row that has it). With
    ``objectives``, each summary has ``objectives``: ``{metric: value}``, a fold mean at the
    trial's best epoch, a cost from its last row that has it (the trained model's latency
    once the trial finished).
    """
    by_trial: dict[str, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], []).append(row)
    sign = -1.0 if mode == "max" else 1.0
    out = []
    for trial_id, trial_rows in by_trial.items():
        first = trial_rows[0]
        epochs = [r for r in trial_rows if _finite(r.get("epoch")) and _finite(r.get("metric"))]
        best = min(epochs, key=lambda r: sign * r["metric"]) if epochs else None
        last = max(epochs, key=lambda r: r["epoch"]) if epochs else {}
        std_key = f"val_{metric}_std"
        out.append(
            {
                "trial_id": trial_id,
                "trial_number": first.get("trial_number"),
                "state": first.get("state"),
                "error": first.get("error"),
                "origin": first.get("origin") or COLD,
                "epochs": int(last.get("epoch", 0)) if epochs else 0,
                "metric": best["metric"] if best else None,
                "metric_std": best.get(std_key) if best else None,
                "best_epoch": int(best["epoch"]) if best else None,
                "last_metric": last.get("metric"),
                **{
                    key: next((r.get(key) for r in reversed(trial_rows) if _finite(r.get(key))), None)
                    for key in ("oof_accuracy", "holdout_accuracy", "holdout_clean_accuracy", "latency_ms")
                },
                "seconds": sum(r.get("epoch_seconds") or 0.0 for r in trial_rows if _finite(r.get("epoch_seconds"))),
                # trial start -> first training step, from the trial's first epoch report
                "startup_s": next((r["startup_s"] for r in trial_rows if _finite(r.get("startup_s"))), None),
                "params": {k[len("param.") :]: v for k, v in first.items() if k.startswith("param.") and v is not None},
            }
        )
        if objectives:
            out[-1]["objectives"] = {
                o.metric: (best or {}).get(o.key)
                if not o.is_cost
                else next((r.get(o.key) for r in reversed(trial_rows) if _finite(r.get(o.key))), None)
                for o in objectives
            }
    out.sort(key=lambda t: (t["metric"] is None, sign * t["metric"] if t["metric"] is not None else 0.0))
    return out


def _read_intervals(metrics_file: Path) -> dict:
    """``{split: {"accuracy", "macro_f1": {value, low, high}, "source"}}`` that ``metrics.json`` holds."""

    try:
        doc = json.loads(metrics_file.read_text())
    except (OSError, ValueError):  # not written yet (a running trial), or not a ferray file
        return {}
    out: dict = {}
    for split in INTERVAL_SPLITS:
        ci = doc.get(f"{split}_ci") if isinstance(doc, dict) else None
        if isinstance(ci, dict) and all(_interval_ok(ci.get(m)) for m in ("accuracy", "macro_f1")):
            out[split] = {m: {k: float(ci[m][k]) for k in ("value", "low", "high")} for m in ("accuracy", "macro_f1")}
            out[split]["source"] = metrics_file.name
    return out


def _interval_ok(v: Any) -> bool:
    return isinstance(v, dict) and all(_finite(v.get(k)) for k in ("value", "low", "high"))


def _computed_interval(predictions_file: Path, *, fold_mean: bool) -> dict | None:
    """Accuracy and macro-F1 intervals of a prediction file (holdout: each row's mean over fold models)."""
    import numpy as np

    if not predictions_file.is_file():
        return None
    try:
        pred = read_predictions(predictions_file)
    except DataError:
        return None
    if not len(pred):
        return None
    labels, probs = pred.labels, pred.probs.astype(np.float64)
    if fold_mean:
        rows, first, inverse = np.unique(pred.rows, return_index=True, return_inverse=True)
        summed = np.zeros((len(rows), probs.shape[1]))
        np.add.at(summed, inverse, probs)
        labels, probs = labels[first], summed / np.bincount(inverse)[:, None]
    ci = bootstrap_metrics(labels, probs, num_classes=len(pred.class_names), seed=0)
    return {**{m: ci[m]._asdict() for m in ("accuracy", "macro_f1")}, "source": predictions_file.name}


def trial_intervals(trial_dir: str | os.PathLike, *, compute: bool = False) -> dict:
    """A trial's bootstrap 95% intervals of accuracy and macro-F1, by split.

    Returns ``{"oof"|"holdout"|"holdout_clean": {"accuracy": {"value", "low", "high"},
    "macro_f1": {...}, "source": file}}`` with the splits the trial's ``metrics.json`` holds;
    with ``compute``, a missing ``oof`` or ``holdout`` interval is computed from
    ``oof.parquet`` / ``holdout.parquet`` (seconds for 100,000 rows) where they exist.
    """
    trial = TrialLayout(Path(trial_dir))
    out = _read_intervals(trial.metrics)
    if compute:
        for split, path, fold_mean in (("oof", trial.oof, False), ("holdout", trial.holdout, True)):
            if split not in out:
                ci = _computed_interval(path, fold_mean=fold_mean)
                if ci is not None:
                    out[split] = ci
    return {split: out[split] for split in INTERVAL_SPLITS if split in out}


def get_status(run_dir: str | os.PathLike, *, disk: bool = False, intervals: bool = True) -> dict:
    """The state of a sweep as a JSON-ready dict.

    Keys: ``run_dir``, ``name``, ``metric``, ``mode``, ``budget_trials``, ``counts``
    (trials per state), ``trials`` (best first, see :func:`summarise_trials`), ``best``
    (the best COMPLETED trial, else the best of any state, or ``None``), ``warm_start``
    (what the sweep took from earlier runs, :func:`ferray.run.warm_start.read_warm_start`, or
    ``None``); with several objectives (``search.objectives``) also ``objectives``
    (``[{metric, direction}]``) and ``pareto`` (the ids of the Pareto-optimal trials among the
    completed and pruned ones), and each trial has ``objectives`` (its values) and ``pareto``
    (True/False); with ``disk`` also ``disk``: the run directory's size and what the retention
    policy removed (:func:`ferray.run.disk.disk_usage`).

    Each trial has an ``origin``: ``cold`` or ``enqueued:<source>``. The finished trials a
    warm start copied into the Optuna study are history, not trials: they are counted in
    ``warm_start``, never listed among ``trials``.

    Each trial has ``intervals`` (:func:`trial_intervals`): the 95% bootstrap intervals its
    ``metrics.json`` holds; the best trial's missing OOF and holdout intervals are computed
    from its prediction files (``intervals=False``: none are read or computed, every
    trial's ``intervals`` is empty).

    Raises:
        ConfigError: ``run_dir`` is not a sweep's run directory.
    """
    run = Path(run_dir)
    results = RunLayout(run).results
    if not run.is_dir():
        raise ConfigError(f"{run}: no such run directory")
    metric, mode, name, trials_budget = "accuracy", "max", run.name, None
    objectives: list[Objective] | None = None
    spec_file = RunLayout(run).spec
    if spec_file.is_file():
        import yaml

        raw = yaml.safe_load(spec_file.read_text()) or {}
        objectives = _objectives(raw, spec_file)
        metric = (raw.get("search") or {}).get("metric") or (raw.get("run") or {}).get("metric") or metric
        if objectives:
            metric = objectives[0].metric
        mode = "min" if metric == "loss" else "max"
        name = raw.get("name", name)
        trials_budget = (raw.get("budget") or {}).get("trials")
    if not results.is_file():
        if not spec_file.is_file():
            raise ConfigError(f"{run}: not a ferray run directory (no results.parquet or spec.yaml)")
        rows: list[dict] = []
    else:
        rows = read_results(results)
    trials = summarise_trials(rows, metric, mode, objectives)
    if objectives:
        _mark_pareto(trials, objectives)
    counts = {s: 0 for s in STATES}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    completed = [t for t in trials if t["state"] == "COMPLETED" and t["metric"] is not None]
    scored = [t for t in trials if t["metric"] is not None]
    best = (completed or scored or [None])[0]
    layout = RunLayout(run)
    for t in trials:
        t["intervals"] = (
            trial_intervals(layout.trial(t["trial_id"]).root, compute=t is best)
            if intervals and _safe_id(t["trial_id"])
            else {}
        )
    out = {
        "run_dir": str(run.absolute()),
        "name": name,
        "metric": metric,
        "mode": mode,
        "budget_trials": trials_budget,
        "counts": {k: v for k, v in counts.items() if v},
        "trials": trials,
        "best": best,
        "warm_start": read_warm_start(run),
    }
    if objectives:
        out["objectives"] = [{"metric": o.metric, "direction": o.mode} for o in objectives]
        out["pareto"] = [t["trial_id"] for t in trials if t["pareto"]]
    if disk:
        out["disk"] = disk_usage(run)
    return out


#: Trial states whose objective values enter the Pareto front (a pruned trial with its values
#: at the epoch it was stopped: its cost is its architecture's, its score a lower bound).
PARETO_STATES = ("COMPLETED", "PRUNED")


def _objectives(raw: dict, spec_file: Path) -> list[Objective] | None:
    """The spec's ``search.objectives`` (``None``: one metric)."""
    entries = (raw.get("search") or {}).get("objectives")
    if not entries:
        return None
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(Objective.model_validate(entry))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in ("search.objectives", i, *error["loc"]))
            raise ConfigError(f"{spec_file}: {where}: {error['msg'].removeprefix('Value error, ')}") from None
    return out


def _mark_pareto(trials: list[dict], objectives: list[Objective]) -> None:
    """Set each trial's ``pareto``: whether it is on the Pareto front of the ended trials.

    Only completed and pruned trials with a finite value of every objective compete.
    """
    for t in trials:
        t["pareto"] = False
    ranked = [
        t
        for t in trials
        if t["state"] in PARETO_STATES and all(_finite(t["objectives"].get(o.metric)) for o in objectives)
    ]
    vectors = [[t["objectives"][o.metric] for o in objectives] for t in ranked]
    for i in pareto_front(vectors, [o.mode for o in objectives]):
        ranked[i]["pareto"] = True


def _safe_id(trial_id: Any) -> bool:
    """A trial id that names a folder inside the run (ids come from a file anyone could edit)."""
    return (
        isinstance(trial_id, str) and trial_id not in ("", ".", "..") and "/" not in trial_id and "\\" not in trial_id
    )


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "-"


def _with_interval(t: dict, split: str, metric: str = "accuracy") -> str:
    """``0.412 [0.398, 0.427]`` when the trial has the interval, else the plain value (or ``-``)."""
    ci = (t.get("intervals") or {}).get(split, {}).get(metric)
    if ci:
        return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
    return _fmt(t.get(f"{split}_{metric}"))


def render_status(status: dict):
    """A rich renderable: the trial table, then the best configuration."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    colours = {"COMPLETED": "green", "PRUNED": "yellow", "ERROR": "red", "RUNNING": "cyan", "STOPPED": "magenta"}
    table = Table(title=f"{status['name']}: {status['metric']} ({status['mode']}), fold mean ± std, best first")
    objectives = status.get("objectives")
    costs = [o["metric"] for o in objectives or [] if o["metric"] != status["metric"]]
    warm = status.get("warm_start") or any(t.get("origin", COLD) != COLD for t in status["trials"])
    columns = ["#", "trial", *(("origin",) if warm else ()), "state", "epochs", f"{status['metric']}"]
    if objectives:
        columns = ["pareto", *columns, *costs]
    for col in (*columns, "OOF acc [95% CI]", "holdout acc [95% CI]", "params / error"):
        table.add_column(col, overflow="fold")
    for t in status["trials"]:
        detail = ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
        if t["error"]:
            detail = (detail + "\n" if detail else "") + f"[red]{t['error']}[/red]"
        metric = f"{_fmt(t['metric'])} ± {_fmt(t['metric_std'])}" if t["metric"] is not None else "-"
        cells = [
            str(t["trial_number"] if t["trial_number"] is not None else ""),
            t["trial_id"],
            *((t.get("origin", COLD),) if warm else ()),
            f"[{colours.get(t['state'], 'white')}]{t['state']}[/]",
            str(t["epochs"]),
            metric,
        ]
        if objectives:
            values = t.get("objectives") or {}
            cells = ["[bold]*[/bold]" if t.get("pareto") else "", *cells, *(_cost(values.get(c)) for c in costs)]
        table.add_row(
            *cells,
            _with_interval(t, "oof"),
            _with_interval(t, "holdout"),
            detail,
        )
    counts = ", ".join(f"{n} {s.lower()}" for s, n in status["counts"].items()) or "no trials yet"
    parts: list = [
        table,
        Text(f"trials: {counts}" + (f" (budget {status['budget_trials']})" if status.get("budget_trials") else "")),
    ]
    for src in (status.get("warm_start") or {}).get("sources", []):
        taken = {
            "seeded": f"{src.get('trials')} finished trials seeded the sampler (history in the study, not trials here)",
            "enqueued": f"its best {src.get('trials')} configurations were evaluated first",
        }.get(src.get("action"), "nothing taken")
        parts.append(Text(f"warm start from {src.get('source')}: {taken} ({src.get('reason')})"))
    if status.get("disk"):
        d = status["disk"]
        line = f"run directory: {d['bytes'] / 1e6:.1f} MB"
        if d["removed_files"]:
            line += (
                f"; the retention policy removed {d['removed_bytes'] / 1e6:.1f} MB in {d['removed_files']} "
                f"file(s) from {d['cleaned_trials']} trial(s)"
            )
        parts.append(Text(line))
    startups = sorted(t["startup_s"] for t in status["trials"] if _finite(t.get("startup_s")))
    if startups:
        parts.append(
            Text(
                f"start-up (trial start to first training step): median {statistics.median(startups):.1f} s, "
                f"{startups[0]:.1f}-{startups[-1]:.1f} s over {len(startups)} trial(s)"
            )
        )
    if objectives:
        names = ", ".join(f"{o['metric']} ({o['direction']})" for o in objectives)
        parts.append(
            Text(
                f"Pareto front over {names}: {len(status['pareto'])} trial(s) marked * "
                "(completed and pruned trials; a pruned trial's fold mean is at the epoch it was stopped)"
            )
        )
    best = status["best"]
    if best:
        parts.append(
            Text(
                f"best: trial {best['trial_id']} ({best['state'].lower()}), {status['metric']} "
                f"{_fmt(best['metric'])} ± {_fmt(best['metric_std'])} at epoch {best['best_epoch']}"
            )
        )
        for k, v in best["params"].items():
            parts.append(Text(f"  {k}: {v}"))
        names = {"oof": "OOF", "holdout": "holdout", "holdout_clean": "holdout without training duplicates"}
        for split, ci in (best.get("intervals") or {}).items():
            parts.append(
                Text(
                    f"  {names[split]}: accuracy {_with_interval(best, split)}, macro-F1 "
                    f"{_with_interval(best, split, 'macro_f1')} (95% bootstrap interval, {ci['source']})"
                )
            )
        if "holdout_clean" not in (best.get("intervals") or {}) and _finite(best.get("holdout_clean_accuracy")):
            parts.append(Text(f"  {names['holdout_clean']}: accuracy {_fmt(best['holdout_clean_accuracy'])}"))
    return Group(*parts)


def _cost(v: Any) -> str:
    """A cost figure: milliseconds with 3 significant digits, counts as 1.2M / 35.1k."""
    if not _finite(v):
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
