"""How a sweep got to its best trial: learning curves, best-so-far, the Optuna study, the Pareto front.

Everything here reads the run directory only (``results.parquet``, ``optuna.db``); no Ray.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ferray.run.layout import RunLayout
from ferray.run.pareto import pareto_front
from ferray.run.status import PARETO_STATES
from ferray.run.warm_start import COLD, ORIGIN_ATTR

__all__ = ["search_history", "study_trials", "param_importances", "front_points", "MIN_TRIALS_FOR_IMPORTANCE"]

#: Completed trials below which parameter importances are not computed (they would be noise).
MIN_TRIALS_FOR_IMPORTANCE = 4


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def search_history(rows: list[dict], metric: str, mode: str) -> dict:
    """Per-trial learning curves (ASHA's stops marked) and the best-so-far curve over epochs spent.

    ``rows`` are ``results.parquet`` rows. Epochs are counted in the order they were
    reported (``timestamp``), so the best-so-far curve shows what the sweep knew after
    spending that many trial-epochs.
    """
    sign = 1.0 if mode == "max" else -1.0
    curves: dict[str, dict] = {}
    epochs = []
    for order, r in enumerate(rows):
        tid = r["trial_id"]
        c = curves.setdefault(
            tid,
            {
                "trial_id": tid,
                "trial_number": r.get("trial_number"),
                "state": r.get("state"),
                "epochs": [],
                "metric": [],
                "stopped_at": None,
            },
        )
        if _finite(r.get("epoch")) and _finite(r.get("metric")):
            c["epochs"].append(int(r["epoch"]))
            c["metric"].append(float(r["metric"]))
            ts = r.get("timestamp")
            epochs.append((ts if _finite(ts) else float("inf"), order, tid, float(r["metric"])))
    for c in curves.values():
        pairs = sorted(zip(c["epochs"], c["metric"]))
        c["epochs"], c["metric"] = [p[0] for p in pairs], [p[1] for p in pairs]
        # A PRUNED trial is one ASHA stopped (ferray tells Optuna PRUNED only for those, and for
        # trials cut short by a time limit): mark where it ended.
        if c["state"] == "PRUNED" and c["epochs"]:
            c["stopped_at"] = c["epochs"][-1]
    epochs.sort(key=lambda e: (e[0], e[1]))
    best, best_trial, curve = None, None, []
    for spent, (_, _, tid, value) in enumerate(epochs, start=1):
        if best is None or sign * value > sign * best:
            best, best_trial = value, tid
        curve.append({"epochs_spent": spent, "best": best, "trial_id": best_trial})
    return {
        "metric": metric,
        "mode": mode,
        "trials": list(curves.values()),
        "best_so_far": curve,
        "epochs_spent": len(epochs),
        "pruned": sorted(t for t, c in curves.items() if c["stopped_at"] is not None),
    }


def front_points(status: dict) -> dict | None:
    """The first objective against the second, per ended trial, from a multi-objective run's status.

    ``None`` for a run with one objective. Otherwise ``{"x", "x_direction", "y", "y_direction",
    "objectives", "points", "step"}``: ``y`` is the first objective (a fold mean), ``x`` the
    second; each point (a COMPLETED or PRUNED trial with both values) has ``trial_id``,
    ``state``, ``x``, ``y`` and ``pareto`` (Pareto-optimal over every objective, as ``ferray
    status`` marks it); ``step`` is the ``[x, y]`` of the points non-dominated on these two
    objectives, by increasing ``x``: the front's step line.
    """
    objectives = status.get("objectives") or []
    if len(objectives) < 2:
        return None
    (y, y_dir), (x, x_dir) = ((o["metric"], o["direction"]) for o in objectives[:2])
    points = []
    for t in status.get("trials", []):
        values = t.get("objectives") or {}
        if t.get("state") in PARETO_STATES and _finite(values.get(x)) and _finite(values.get(y)):
            points.append(
                {
                    "trial_id": t["trial_id"],
                    "state": t["state"],
                    "x": float(values[x]),
                    "y": float(values[y]),
                    "pareto": bool(t.get("pareto")),
                }
            )
    front = pareto_front([[p["y"], p["x"]] for p in points], [y_dir, x_dir])
    step = sorted({(points[i]["x"], points[i]["y"]) for i in front})
    return {
        "x": x,
        "x_direction": x_dir,
        "y": y,
        "y_direction": y_dir,
        "objectives": [o["metric"] for o in objectives],
        "points": points,
        "step": [list(p) for p in step],
    }


def _open_study(run: RunLayout, name: str | None):
    import optuna

    storage = f"sqlite:///{run.study.absolute()}"
    names = optuna.get_all_study_names(storage)
    if not names:
        return None
    return optuna.load_study(study_name=name if name in names else names[0], storage=storage)


def study_trials(run: RunLayout, study_name: str | None = None) -> tuple[list[dict], dict, Any]:
    """``(trials, distributions, study)`` of the run's Optuna study, or ``([], {}, None)`` without one.

    Each trial: ``number``, ``state`` (COMPLETE, PRUNED, FAIL, RUNNING), ``value`` (the final
    value, else the last intermediate one), ``params``, ``origin`` (``seeded`` for an earlier
    run's trial a warm start copied in, else the trial's origin, see :mod:`ferray.run.warm_start`).
    ``distributions`` maps a parameter to
    ``{"kind": "float"|"int"|"categorical", "log", "low", "high", "choices"}``.
    """
    if not run.study.is_file():
        return [], {}, None
    study = _open_study(run, study_name)
    if study is None:
        return [], {}, None
    trials, dists = [], {}
    for t in study.get_trials(deepcopy=False):
        value = t.value
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        origin = t.user_attrs.get(ORIGIN_ATTR, COLD)  # seeded: an earlier run's trial (ferray.run.warm_start)
        trials.append(
            {"number": t.number, "state": t.state.name, "value": value, "params": dict(t.params), "origin": origin}
        )
        for name, d in t.distributions.items():
            if name in dists:
                continue
            kind = type(d).__name__.replace("Distribution", "").lower()
            dists[name] = {
                "kind": "categorical" if "categorical" in kind else ("int" if "int" in kind else "float"),
                "log": bool(getattr(d, "log", False)),
                "low": getattr(d, "low", None),
                "high": getattr(d, "high", None),
                "choices": list(d.choices) if hasattr(d, "choices") else None,
            }
    return trials, dists, study


def param_importances(study, n_complete: int) -> dict:
    """``{"importances": {param: share}, "evaluator", "note"}`` from ``optuna.importance``.

    With fewer than :data:`MIN_TRIALS_FOR_IMPORTANCE` completed trials, or when Optuna
    cannot compute them (a single parameter value, ...), ``importances`` is empty and
    ``note`` says why.
    """
    if study is None:
        return {"importances": {}, "evaluator": None, "note": "no Optuna study (optuna.db) in the run"}
    if n_complete < MIN_TRIALS_FOR_IMPORTANCE:
        return {
            "importances": {},
            "evaluator": None,
            "note": f"{n_complete} completed trial(s); parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE}",
        }
    import optuna

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            imp = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            return {
                "importances": {},
                "evaluator": None,
                "note": f"optuna.importance could not rank the parameters: {exc}",
            }
    notes = sorted({str(w.message) for w in caught})
    evaluator = "default evaluator of optuna.importance.get_param_importances (optuna " + optuna.__version__ + ")"
    return {
        "importances": {k: float(v) for k, v in imp.items()},
        "evaluator": evaluator,
        "note": "; ".join(notes) or None,
    }
