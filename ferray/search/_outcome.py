"""What a sweep ended with, read back from its run directory, and how two such endings differ.

Used to check that an interrupted and resumed sweep ends as the same sweep run straight
through would (``tests/search/test_kill_anywhere_ray.py``, ``benchmarks/bench_resume.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ferray.run.layout import RunLayout
from ferray.run.manifest import read_manifest
from ferray.run.results import read_results

__all__ = ["SweepOutcome", "sweep_outcome", "outcome_differences", "trained_in_one_process"]

_FINAL = ("COMPLETED", "PRUNED", "ERROR")
_OPTUNA_FINAL = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class SweepOutcome:
    """A sweep's end: per trial its state, parameters and last fold-mean metric; the study; the bundle."""

    budget: int
    trials: dict[str, dict]  # trial id -> {"state", "params", "metric", "epochs"}
    study: list[tuple[str, str | None]]  # (Optuna state, Tune trial id) per Optuna trial
    bundle: bool

    def by_params(self) -> dict[str, dict]:
        return {_key(t["params"]): t for t in self.trials.values()}


def _key(params: dict) -> str:
    return json.dumps({k: round(v, 10) if isinstance(v, float) else v for k, v in sorted(params.items())})


def sweep_outcome(run_dir: str | os.PathLike) -> SweepOutcome:
    """Read a sweep's end from ``results.parquet``, ``optuna.db``, the manifest and the bundle."""
    import optuna

    layout = RunLayout(Path(run_dir))
    manifest = read_manifest(layout.root)
    trials: dict[str, dict] = {}
    for row in read_results(layout.results) if layout.results.exists() else []:
        t = trials.setdefault(
            row["trial_id"],
            {
                "state": row["state"],
                "metric": None,
                "epochs": 0,
                "params": {k[len("param.") :]: v for k, v in row.items() if k.startswith("param.") and v is not None},
            },
        )
        if row.get("epoch") is not None:
            t["epochs"] = max(t["epochs"], int(row["epoch"]))
            t["metric"] = row.get("metric")
    study_name = manifest["spec"]["name"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{layout.study}")
    return SweepOutcome(
        budget=int(manifest["trials"]),
        trials=trials,
        study=[(t.state.name, t.user_attrs.get("tune_trial_id")) for t in study.trials],
        bundle=(layout.bundle / "manifest.json").is_file(),
    )


def outcome_differences(
    reference: SweepOutcome, other: SweepOutcome, *, compare_scores: set[str] | None = None, tolerance: float = 1e-6
) -> list[str]:
    """What ``other`` ended with that ``reference`` (the same sweep, uninterrupted) did not; empty when alike.

    Checked: as many trials as the budget, none left unfinished in the results or the study,
    one Optuna trial per Tune trial in the matching state, the same parameters tried, a bundle
    when the reference has one, and the same last metric for the trials in ``compare_scores``
    (those that trained start to end inside one process; default all).
    """
    out = []
    if len(other.trials) != other.budget:
        out.append(f"{len(other.trials)} trials for a budget of {other.budget}")
    open_rows = sorted(tid for tid, t in other.trials.items() if t["state"] not in _FINAL)
    if open_rows:
        out.append(
            "trials not finished in results.parquet: "
            + ", ".join(f"{tid} {other.trials[tid]['state']}" for tid in open_rows)
        )
    open_study = [f"{tid} {state}" for state, tid in other.study if state not in _OPTUNA_FINAL]
    if open_study:
        out.append("Optuna trials not finished: " + ", ".join(open_study))
    expect = {"COMPLETED": ("COMPLETE",), "PRUNED": ("PRUNED",), "ERROR": ("FAIL",)}
    by_tune = {}
    for state, tid in other.study:
        by_tune.setdefault(tid, []).append(state)
    for tid, t in sorted(other.trials.items()):
        states = by_tune.get(tid, [])
        if t["state"] in expect and (not states or states[-1] not in expect[t["state"]]):
            out.append(f"{tid} is {t['state']} but its Optuna trial is {states or 'missing'}")
    ref, got = reference.by_params(), other.by_params()
    if set(ref) != set(got):
        out.append(f"other parameters tried: {sorted(set(got) - set(ref))} instead of {sorted(set(ref) - set(got))}")
    if reference.bundle and not other.bundle:
        out.append("no bundle")
    for key in sorted(set(ref) & set(got)):
        a, b = ref[key], got[key]
        tid = next(tid for tid, t in other.trials.items() if t is b)
        if compare_scores is not None and tid not in compare_scores:
            continue
        if a["state"] != b["state"]:
            out.append(f"{tid} ({key}) ended {b['state']}, {a['state']} uninterrupted")
        elif (a["metric"] is None) != (b["metric"] is None) or (
            a["metric"] is not None and abs(a["metric"] - b["metric"]) > tolerance
        ):
            out.append(f"{tid} ({key}) scored {b['metric']}, {a['metric']} uninterrupted")
    return out


def trained_in_one_process(run_dir: str | os.PathLike, stops: list[float]) -> set[str]:
    """Trials whose epochs (each trial's ``epochs.jsonl`` ledger) all lie between two of ``stops``
    (start and kill times): the ones whose scores an interruption cannot have changed."""
    spans = list(zip(stops, list(stops[1:]) + [float("inf")]))
    out = set()
    for path in Path(run_dir).glob("*/epochs.jsonl"):
        times = [json.loads(x)["time"] for x in path.read_text().splitlines() if x.strip()]
        if times and any(a < min(times) and max(times) < b for a, b in spans):
            out.add(path.parent.name)
    return out
