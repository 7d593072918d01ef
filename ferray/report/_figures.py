"""The report's figures, drawn with matplotlib's object API (no pyplot: no global backend, no windows).

Each ``*_figure`` function takes a section of the report dict and returns a
``matplotlib.figure.Figure`` (or ``None`` when the section has nothing to draw);
:func:`draw_figures` saves every figure the report has as a PNG and returns their names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferray.report._metrics import row_normalised

__all__ = ["draw_figures"]

_DPI = 100
_STATE_COLOURS = {
    "COMPLETED": "#2b8a3e",
    "COMPLETE": "#2b8a3e",
    "PRUNED": "#e67700",
    "ERROR": "#c92a2a",
    "FAIL": "#c92a2a",
    "RUNNING": "#1971c2",
    "STOPPED": "#862e9c",
}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def confusion_figure(model: dict, class_names: Sequence[str], title: str, rows: Sequence[str] | None = None):
    """Counts and row-normalised confusion matrices side by side (rows: true class).

    ``rows`` names the rows when they are not the model's classes (a dataset's classes).
    """
    cm = model.get("confusion")
    if not cm:
        return None
    counts = np.asarray(cm["counts"])
    norm = np.asarray(cm["normalised"])
    rows = list(rows or class_names)
    n = max(len(rows), len(class_names))
    fig = _figure(min(16, 3.2 + 1.3 * n), min(8, 1.8 + 0.55 * n))
    norm_label = "row-normalised (recall on the diagonal)" if rows == list(class_names) else "row-normalised"
    for ax, data, fmt, label in zip(fig.subplots(1, 2), (counts, norm), ("d", ".2f"), ("counts", norm_label)):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: {label}", fontsize=9)
        top = data.max() if data.max() > 0 else 1
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(
                    j,
                    i,
                    format(data[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if data[i, j] > 0.6 * top else "black",
                )
        fig.colorbar(im, ax=ax, shrink=0.7)
    return fig


def reliability_figure(model: dict, title: str):
    """Reliability diagram (accuracy vs confidence per bin, before and after temperature) and the bins' rows."""
    cal = model.get("calibration")
    if not cal:
        return None
    fig = _figure(8.5, 3.8)
    ax, hist = fig.subplots(1, 2, width_ratios=[1.3, 1])
    edges = np.asarray(cal["reliability"]["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")

    def bars(rel: dict, colour: str, label: str, offset: float) -> None:
        acc = np.array([a if a is not None else np.nan for a in rel["accuracy"]], dtype=float)
        ok = ~np.isnan(acc)
        ax.bar(
            centres[ok] + offset,
            acc[ok],
            width=width / 2,
            color=colour,
            alpha=0.8,
            label=label,
            edgecolor="black",
            lw=0.3,
        )

    bars(cal["reliability"], "#1971c2", f"raw (ECE {cal['ece']:.3f})", -width / 4)
    if cal.get("reliability_scaled") is not None:
        bars(
            cal["reliability_scaled"],
            "#e67700",
            f"T = {cal['temperature']:.2f} (ECE {cal['ece_scaled']:.3f})",
            width / 4,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: reliability on {cal['evaluated_on']} rows", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    hist.bar(centres, cal["reliability"]["count"], width=width * 0.9, color="#1971c2", alpha=0.8)
    hist.set_xlim(0, 1)
    hist.set_xlabel("confidence")
    hist.set_ylabel("rows")
    hist.set_title("rows per confidence bin (raw)", fontsize=9)
    return fig


def per_class_figure(models: dict, class_names: Sequence[str]):
    """Per-class F1 of every evaluated model (their evaluation split), grouped by class."""
    entries = [
        (m["label"], m[m["evaluated_on"]]["per_class"])
        for m in models.values()
        if m.get("evaluated_on") and m.get(m["evaluated_on"])
    ]
    if not entries or not class_names:
        return None
    fig = _figure(min(16, 3 + 0.9 * len(class_names) * max(1, len(entries)) ** 0.5), 3.6)
    ax = fig.subplots()
    x = np.arange(len(class_names))
    w = 0.8 / len(entries)
    for k, (label, per) in enumerate(entries):
        ax.bar(x + (k - (len(entries) - 1) / 2) * w, [per[c]["f1"] for c in class_names], width=w, label=label)
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title("per-class F1 (each model on its evaluation rows)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def au_figure(model: dict, title: str):
    """Per-AU F1 bars (AUs that never occur are left out)."""
    au = model.get("au")
    if not au:
        return None
    split = model["evaluated_on"] if model.get("evaluated_on") in au else next(iter(au))
    per = {k: v for k, v in au[split]["per_au"].items() if v["f1"] is not None}
    if not per:
        return None
    fig = _figure(min(14, 2.5 + 0.45 * len(per)), 3.2)
    ax = fig.subplots()
    ax.bar(list(per), [v["f1"] for v in per.values()], color="#5f3dc4")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.tick_params(axis="x", labelrotation=45)
    mean = au[split]["mean_f1"]
    ax.set_title(
        f"{title}: per-AU F1 on {split} rows (mean {mean:.3f}, threshold {au[split]['threshold']})", fontsize=9
    )
    return fig


def comparison_figure(rows: list[dict]):
    """Holdout accuracy and macro F1 of the best trial, each ensemble and the student."""
    rows = [r for r in rows if _finite(r.get("holdout_accuracy"))]
    if not rows:
        return None
    fig = _figure(min(14, 3 + 1.1 * len(rows)), 3.4)
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["holdout_accuracy"] for r in rows], width=0.4, label="accuracy", color="#1971c2")
    ax.bar(x + 0.2, [r.get("holdout_macro_f1") or 0 for r in rows], width=0.4, label="macro F1", color="#2b8a3e")
    ax.set_xticks(x, [r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title("holdout: best single trial vs ensembles vs student", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def best_so_far_figure(history: dict):
    curve = history.get("best_so_far") or []
    if not curve:
        return None
    fig = _figure(6.5, 3.4)
    ax = fig.subplots()
    ax.step([c["epochs_spent"] for c in curve], [c["best"] for c in curve], where="post", color="#1971c2")
    ax.set_xlabel("trial-epochs spent (in report order)")
    ax.set_ylabel(f"best {history['metric']} so far ({history['mode']})")
    ax.set_title("best-so-far against epochs spent", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def learning_curves_figure(history: dict):
    trials = [t for t in history.get("trials", []) if t["epochs"]]
    if not trials:
        return None
    fig = _figure(7.5, 4.0)
    ax = fig.subplots()
    for t in trials:
        colour = _STATE_COLOURS.get(t["state"], "#495057")
        ax.plot(t["epochs"], t["metric"], marker="o", ms=3, lw=1.2, color=colour, alpha=0.85)
        if t.get("stopped_at") is not None:
            ax.plot([t["epochs"][-1]], [t["metric"][-1]], marker="X", ms=10, color="#e67700", mec="black", mew=0.6)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=c, label=s.lower())
        for s, c in _STATE_COLOURS.items()
        if any(t["state"] == s for t in trials)
    ]
    handles.append(Line2D([], [], marker="X", ls="", color="#e67700", mec="black", ms=9, label="stopped by ASHA"))
    ax.legend(handles=handles, fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"fold-mean {history['metric']}")
    ax.set_title("per-trial learning curves", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def front_figure(front: dict):
    """The first objective against the second: every ended trial a point (pruned ones faint), the
    Pareto-optimal ones highlighted and the front's step line through the non-dominated ones."""
    points = front.get("points") or []
    if not points:
        return None
    fig = _figure(6.5, 4.0)
    ax = fig.subplots()
    for state, alpha in (("COMPLETED", 0.8), ("PRUNED", 0.25)):
        mine = [p for p in points if p["state"] == state and not p["pareto"]]
        if mine:
            ax.scatter(
                [p["x"] for p in mine],
                [p["y"] for p in mine],
                s=22,
                color=_STATE_COLOURS.get(state, "#495057"),
                alpha=alpha,
                label=state.lower(),
            )
    step = front.get("step") or []
    if step:
        ax.step([s[0] for s in step], [s[1] for s in step], where="post", color="#e67700", lw=1.4, label="front")
    best = [p for p in points if p["pareto"]]
    if best:
        ax.scatter(
            [p["x"] for p in best],
            [p["y"] for p in best],
            s=60,
            color="#e67700",
            edgecolors="black",
            linewidths=0.7,
            zorder=3,
            label="Pareto-optimal",
        )
        for p in best:
            ax.annotate(p["trial_id"], (p["x"], p["y"]), fontsize=6, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"{front['x']} ({front['x_direction']})")
    ax.set_ylabel(f"fold-mean {front['y']} ({front['y_direction']})")
    ax.set_title(f"Pareto front: {front['y']} against {front['x']}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def importances_figure(study: dict):
    imp = study.get("importances") or {}
    if not imp:
        return None
    names = list(imp)[::-1]
    fig = _figure(6.5, 1.2 + 0.45 * len(names))
    ax = fig.subplots()
    ax.barh(names, [imp[n] for n in names], color="#5f3dc4")
    ax.set_xlabel("importance (share)")
    ax.set_title("parameter importances (Optuna)", fontsize=9)
    return fig


def _axis_values(values: list, dist: dict | None) -> tuple[np.ndarray, list[str] | None, list[float] | None]:
    """Positions in [0, 1] of one parameter's values, with tick labels for categorical axes."""
    present = [v for v in values if v is not None]
    numeric = (
        present
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        and not (dist and dist.get("kind") == "categorical")
    )
    if not numeric:
        choices = [str(c) for c in (dist or {}).get("choices") or []] or sorted({str(v) for v in present})
        pos = {c: (i / (len(choices) - 1) if len(choices) > 1 else 0.5) for i, c in enumerate(choices)}
        return (
            np.array([pos.get(str(v), np.nan) if v is not None else np.nan for v in values]),
            choices,
            [pos[c] for c in choices],
        )
    log = bool(dist and dist.get("log"))
    raw = np.array([float(v) if v is not None else np.nan for v in values])
    lo = dist.get("low") if dist and dist.get("low") is not None else np.nanmin(raw)
    hi = dist.get("high") if dist and dist.get("high") is not None else np.nanmax(raw)
    f = np.log10 if log else (lambda a: a)
    lo_t, hi_t = f(lo), f(hi)
    span = (hi_t - lo_t) or 1.0
    with np.errstate(invalid="ignore"):
        pos = (f(raw) - lo_t) / span
    return pos, [f"{lo:.3g}", f"{hi:.3g}"], [0.0, 1.0]


def parallel_figure(study: dict, metric: str, mode: str):
    """Parallel coordinates: one axis per parameter and one for the value; pruned/failed trials dashed."""
    trials = [t for t in study.get("trials", []) if t.get("params")]
    if len(trials) < 2:
        return None
    params = sorted({p for t in trials for p in t["params"]})
    dists = study.get("distributions") or {}
    values = [t.get("value") for t in trials]
    finite = [v for v in values if _finite(v)]
    if not params or not finite:
        return None
    fig = _figure(min(14, 2.5 + 1.6 * (len(params) + 1)), 4.2)
    ax = fig.subplots()
    cols, ticks = [], []
    for p in params:
        pos, labels, where = _axis_values([t["params"].get(p) for t in trials], dists.get(p))
        cols.append(pos)
        ticks.append((labels, where))
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    cols.append(np.array([(v - lo) / span if _finite(v) else np.nan for v in values]))
    ticks.append(([f"{lo:.3g}", f"{hi:.3g}"], [0.0, 1.0]))
    data = np.vstack(cols).T
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    x = np.arange(data.shape[1])
    for t, row, v in zip(trials, data, values):
        done = t.get("state") in ("COMPLETE", "COMPLETED")
        colour = (
            cmap(((v - lo) / span) if _finite(v) else 0.0)
            if mode == "max" or not _finite(v)
            else cmap(1 - (v - lo) / span)
        )
        ax.plot(
            x,
            row,
            color=colour if done else "#adb5bd",
            ls="-" if done else "--",
            lw=1.5 if done else 1,
            alpha=0.9,
            marker="o",
            ms=3,
        )
    for i, (labels, where) in enumerate(ticks):
        ax.axvline(i, color="black", lw=0.8)
        for lab, w in zip(labels or [], where or []):
            ax.text(i + 0.03, w, lab, fontsize=7, va="center")
    ax.set_xticks(x, params + [metric], rotation=15, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    ax.set_title("parallel coordinates (completed: coloured by value; pruned or failed: grey dashed)", fontsize=9)
    return fig


def draw_figures(report: dict, figures_dir: Path) -> dict[str, str]:
    """Draw every figure the report has into ``figures_dir``; ``{figure name: file name}``."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    names = report.get("class_names") or []
    todo: list[tuple[str, Any]] = []
    for key, m in report.get("models", {}).items():
        todo.append((f"confusion_{key}", lambda m=m: confusion_figure(m, names, m["label"])))
        todo.append((f"reliability_{key}", lambda m=m: reliability_figure(m, m["label"])))
        todo.append((f"au_{key}", lambda m=m: au_figure(m, m["label"])))
    todo.append(("per_class_f1", lambda: per_class_figure(report.get("models", {}), names)))
    todo.append(("comparison", lambda: comparison_figure(report.get("comparison") or [])))
    cross = report.get("cross_dataset")
    if cross:
        for key, m in cross["models"].items():
            todo.append((f"cross_confusion_{key}", lambda m=m: confusion_figure(m, names, m["label"])))
            by = m["by_data_class"]
            todo.append(
                (
                    f"cross_by_data_class_{key}",
                    lambda m=m, by=by: confusion_figure(
                        {"confusion": {"counts": by["counts"], "normalised": row_normalised(by["counts"])}},
                        by["columns"],
                        f"{m['label']}, every dataset class",
                        rows=by["rows"],
                    ),
                )
            )
            todo.append((f"cross_reliability_{key}", lambda m=m: reliability_figure(m, m["label"])))
        todo.append(("cross_per_class_f1", lambda: per_class_figure(cross["models"], names)))
    front = report.get("front")
    if front:
        todo.append(("pareto_front", lambda: front_figure(front)))
    history = report.get("history")
    if history:
        todo.append(("best_so_far", lambda: best_so_far_figure(history)))
        todo.append(("learning_curves", lambda: learning_curves_figure(history)))
    study = report.get("study")
    if study:
        todo.append(("importances", lambda: importances_figure(study)))
        todo.append(
            (
                "parallel_coordinates",
                lambda: parallel_figure(study, report.get("metric", "value"), report.get("mode", "max")),
            )
        )
    out: dict[str, str] = {}
    for name, make in todo:
        fig = make()
        if fig is None:
            continue
        path = figures_dir / f"{name}.png"
        fig.savefig(path, dpi=_DPI)
        out[name] = path.name
    return out
