"""``ferray status RUN``: the trials of a sweep, best first, and the best configuration.

Reads only files of the run directory (``results.parquet``, ``spec.yaml``), so it works
while the sweep runs, after it ended, and on a machine without Ray.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

from ferray.errors import ConfigError
from ferray.layout import RunLayout
from ferray.search._results import STATES, read_results

__all__ = ["get_status", "render_status", "summarise_trials"]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarise_trials(rows: list[dict], metric: str = "accuracy", mode: str = "max") -> list[dict]:
    """One summary per trial from results rows, best first (best epoch's fold mean).

    Trials without a finite fold mean (errored before their first epoch) come last.
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
        out.append({
            "trial_id": trial_id,
            "trial_number": first.get("trial_number"),
            "state": first.get("state"),
            "error": first.get("error"),
            "epochs": int(last.get("epoch", 0)) if epochs else 0,
            "metric": best["metric"] if best else None,
            "metric_std": best.get(std_key) if best else None,
            "best_epoch": int(best["epoch"]) if best else None,
            "last_metric": last.get("metric"),
            "oof_accuracy": next((r.get("oof_accuracy") for r in reversed(trial_rows)
                                  if _finite(r.get("oof_accuracy"))), None),
            "seconds": sum(r.get("epoch_seconds") or 0.0 for r in trial_rows if _finite(r.get("epoch_seconds"))),
            # trial start -> first training step, from the trial's first epoch report
            "startup_s": next((r["startup_s"] for r in trial_rows if _finite(r.get("startup_s"))), None),
            "params": {k[len("param."):]: v for k, v in first.items() if k.startswith("param.") and v is not None},
        })
    out.sort(key=lambda t: (t["metric"] is None, sign * t["metric"] if t["metric"] is not None else 0.0))
    return out


def get_status(run_dir: str | os.PathLike, *, disk: bool = False) -> dict:
    """The state of a sweep as a JSON-ready dict.

    Keys: ``run_dir``, ``name``, ``metric``, ``mode``, ``budget_trials``, ``counts``
    (trials per state), ``trials`` (best first, see :func:`summarise_trials`), ``best``
    (the best COMPLETED trial, else the best of any state, or ``None``); with ``disk``
    also ``disk``: the run directory's size and what the retention policy removed
    (:func:`ferray.search._retention.disk_usage`).

    Raises:
        ConfigError: ``run_dir`` is not a sweep's run directory.
    """
    run = Path(run_dir)
    results = RunLayout(run).results
    if not run.is_dir():
        raise ConfigError(f"{run}: no such run directory")
    metric, mode, name, trials_budget = "accuracy", "max", run.name, None
    spec_file = RunLayout(run).spec
    if spec_file.is_file():
        import yaml

        raw = yaml.safe_load(spec_file.read_text()) or {}
        metric = (raw.get("search") or {}).get("metric") or (raw.get("run") or {}).get("metric") or metric
        mode = "min" if metric == "loss" else "max"
        name = raw.get("name", name)
        trials_budget = (raw.get("budget") or {}).get("trials")
    if not results.is_file():
        if not spec_file.is_file():
            raise ConfigError(f"{run}: not a ferray run directory (no results.parquet or spec.yaml)")
        rows: list[dict] = []
    else:
        rows = read_results(results)
    trials = summarise_trials(rows, metric, mode)
    counts = {s: 0 for s in STATES}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    completed = [t for t in trials if t["state"] == "COMPLETED" and t["metric"] is not None]
    scored = [t for t in trials if t["metric"] is not None]
    best = (completed or scored or [None])[0]
    out = {"run_dir": str(run.absolute()), "name": name, "metric": metric, "mode": mode,
           "budget_trials": trials_budget, "counts": {k: v for k, v in counts.items() if v},
           "trials": trials, "best": best}
    if disk:
        from ferray.search._retention import disk_usage

        out["disk"] = disk_usage(run)
    return out


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "-"


def render_status(status: dict):
    """A rich renderable: the trial table, then the best configuration."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    colours = {"COMPLETED": "green", "PRUNED": "yellow", "ERROR": "red", "RUNNING": "cyan", "STOPPED": "magenta"}
    table = Table(title=f"{status['name']}: {status['metric']} ({status['mode']}), fold mean ± std, best first")
    for col in ("#", "trial", "state", "epochs", f"{status['metric']}", "oof acc", "params / error"):
        table.add_column(col, overflow="fold")
    for t in status["trials"]:
        detail = ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items())
        if t["error"]:
            detail = (detail + "\n" if detail else "") + f"[red]{t['error']}[/red]"
        metric = f"{_fmt(t['metric'])} ± {_fmt(t['metric_std'])}" if t["metric"] is not None else "-"
        table.add_row(str(t["trial_number"] if t["trial_number"] is not None else ""), t["trial_id"],
                      f"[{colours.get(t['state'], 'white')}]{t['state']}[/]", str(t["epochs"]), metric,
                      _fmt(t["oof_accuracy"]), detail)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in status["counts"].items()) or "no trials yet"
    parts: list = [table, Text(f"trials: {counts}" + (f" (budget {status['budget_trials']})"
                                                       if status.get("budget_trials") else ""))]
    if status.get("disk"):
        d = status["disk"]
        line = f"run directory: {d['bytes'] / 1e6:.1f} MB"
        if d["removed_files"]:
            line += (f"; the retention policy removed {d['removed_bytes'] / 1e6:.1f} MB in {d['removed_files']} "
                     f"file(s) from {d['cleaned_trials']} trial(s)")
        parts.append(Text(line))
    startups = sorted(t["startup_s"] for t in status["trials"] if _finite(t.get("startup_s")))
    if startups:
        parts.append(Text(f"start-up (trial start to first training step): median {statistics.median(startups):.1f} s, "
                          f"{startups[0]:.1f}-{startups[-1]:.1f} s over {len(startups)} trial(s)"))
    best = status["best"]
    if best:
        parts.append(Text(f"best: trial {best['trial_id']} ({best['state'].lower()}), {status['metric']} "
                          f"{_fmt(best['metric'])} ± {_fmt(best['metric_std'])} at epoch {best['best_epoch']}"))
        for k, v in best["params"].items():
            parts.append(Text(f"  {k}: {v}"))
    return Group(*parts)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
