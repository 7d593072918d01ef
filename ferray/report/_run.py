"""The numbers of a run's report: its models' predictions, the ensemble table, the search.

Reads only files of the run directory (through :class:`~ferray.run.layout.RunLayout`), plus the
run's dataset when a multi-task model's AU F1 needs its AU labels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ferray._io import json_safe
from ferray.errors import ConfigError, DataError, FerrayError
from ferray.report._evaluate import Split, evaluate_model
from ferray.run.layout import RunLayout
from ferray.run.predictions import read_predictions
from ferray.run.results import read_results
from ferray.run.status import get_status

__all__ = ["collect_run"]


def _splits(oof_path: Path | None, holdout_path: Path | None) -> tuple[Split | None, Split | None, dict]:
    """OOF and holdout splits of a pair of prediction files (holdout averaged over fold models)."""

    oof = hold = None
    meta: dict = {}
    if oof_path is not None and oof_path.is_file():
        p = read_predictions(oof_path)
        meta = dict(p.meta)
        oof = Split("oof", p.rows, p.labels, p.probs, folds=p.folds, au_probs=p.au_probs)
    if holdout_path is not None and holdout_path.is_file():
        p = read_predictions(holdout_path)
        meta = meta or dict(p.meta)
        mean = p.row_means()
        hold = Split("holdout", mean.rows, mean.labels, mean.probs, au_probs=mean.au_probs)
    return oof, hold, meta


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _read_table(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(path.read_bytes()), use_threads=False).to_pylist()


class _AULabels:
    """The run's dataset AU labels, loaded once and only when a model predicts AUs."""

    def __init__(self, run: RunLayout, notes: list[str]) -> None:
        self.run, self.notes = run, notes
        self._loaded = False
        self.labels: np.ndarray | None = None
        self.fingerprint: str | None = None

    def get(self, fingerprint: str | None) -> np.ndarray | None:
        if not self._loaded:
            self._loaded = True
            self._load()
        if self.labels is None:
            return None
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            self.notes.append(
                f"per-AU F1 left out: the predictions were made on data {fingerprint[:12]}, "
                f"the run's data source now gives {self.fingerprint[:12]}"
            )
            return None
        return self.labels

    def _load(self) -> None:
        import yaml

        from ferray.data import load_source

        try:
            raw = yaml.safe_load(self.run.spec.read_text()) or {}
            section = raw.get("data") or {}
            source = section.get("source")
            if not source:
                raise ConfigError(f"{self.run.spec}: no data.source")
            data = load_source(source, size=section.get("size"), channels=section.get("channels"))
        except (FerrayError, OSError) as exc:
            self.notes.append(f"per-AU F1 left out: cannot load the run's data ({exc})")
            return
        if data.aus is None:
            self.notes.append("per-AU F1 left out: the run's data has no AU labels")
            return
        self.labels = np.asarray(data.aus)
        self.fingerprint = data.fingerprint()


def _status(run: RunLayout, notes: list[str]) -> dict | None:
    try:
        # The report scores the best trial from its prediction files itself; status's intervals
        # would read them (and every trial's metrics.json) once more for numbers the page does not show.
        return get_status(run.root, intervals=False)
    except FerrayError as exc:
        notes.append(f"no search status: {exc}")
        return None


def collect_run(run_dir: str | Path, *, echo: Callable[[str], Any] | None = None, top_confused: int = 5) -> dict:
    """The report of a run directory as a JSON-ready dict (see :func:`ferray.report.build_report`).

    Raises:
        ConfigError: ``run_dir`` is not a ferray run directory.
    """
    from ferray.data import AU_IDS
    from ferray.report._search import front_points, param_importances, search_history, study_trials

    say = echo or (lambda _s: None)
    run = RunLayout(Path(run_dir).absolute())
    if not run.root.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    if not run.spec.is_file() and not run.results.is_file():
        raise ConfigError(
            f"{run_dir}: not a ferray run directory (no {RunLayout.SPEC} or {RunLayout.RESULTS}); "
            "pass the folder `ferray search` created, or a bundle folder"
        )
    notes: list[str] = []
    au = _AULabels(run, notes)
    status = _status(run, notes)
    metric = status["metric"] if status else "accuracy"
    mode = status["mode"] if status else "max"
    report: dict = {
        "kind": "run",
        "source": str(run.root),
        "name": run.name,
        "metric": metric,
        "mode": mode,
        "models": {},
        "notes": notes,
    }
    class_names: list[str] | None = None

    def add(key: str, label: str, kind: str, oof_path: Path | None, hold_path: Path | None, extra: dict) -> None:
        nonlocal class_names
        try:
            oof, hold, meta = _splits(oof_path, hold_path)
        except DataError as exc:
            notes.append(f"{label}: {exc}")
            return
        if oof is None and hold is None:
            return
        names = list(meta.get("class_names") or [])
        class_names = class_names or names
        has_au = any(s is not None and s.au_probs is not None for s in (oof, hold))
        au_labels = au.get(meta.get("data_fingerprint")) if has_au else None
        say(f"report: evaluating {label}")
        report["models"][key] = evaluate_model(
            label,
            kind,
            names,
            oof=oof,
            holdout=hold,
            au_labels=au_labels,
            au_ids=AU_IDS,
            top_confused=top_confused,
            extra=extra,
        )

    # -- the best single trial ---------------------------------------------------------------------------------
    best = (status or {}).get("best")
    if best is not None:
        trial = run.trial(best["trial_id"])
        add(
            "best_trial",
            f"best trial {best['trial_id']}",
            "trial",
            trial.oof,
            trial.holdout,
            {
                "trial_id": best["trial_id"],
                "state": best["state"],
                "fold_mean": best.get("metric"),
                "fold_mean_std": best.get("metric_std"),
                "best_epoch": best.get("best_epoch"),
                "params": best.get("params", {}),
            },
        )
        if "best_trial" not in report["models"]:
            notes.append(f"best trial {best['trial_id']} left no prediction files ({trial.OOF}, {trial.HOLDOUT})")

    # -- the ensemble ------------------------------------------------------------------------------------------
    ens = run.ensemble_files
    summary = _read_json(ens.summary) if ens.summary.is_file() else None
    if summary is not None:
        chosen = summary.get("chosen")
        fitted = (summary.get("methods") or {}).get(chosen) or {}
        # Each method names its members (greedy picks from a wider pool); older files: the top-level list.
        members = (
            fitted.get("members")
            if isinstance(fitted.get("members"), list)
            else [m.get("trial_id") for m in summary.get("members", []) if isinstance(m, dict)]
        )
        weights = fitted.get("weights")
        add(
            "ensemble",
            f"ensemble ({chosen})",
            "ensemble",
            ens.oof,
            ens.holdout,
            {"method": chosen, "members": members, "weights": weights, "chosen_by": summary.get("chosen_by")},
        )
    if ens.table.is_file():
        report["ensemble_table"] = _read_table(ens.table)

    # -- the distilled student ---------------------------------------------------------------------------------
    dist = run.distill_files
    dsum = _read_json(dist.summary) if dist.summary.is_file() else None
    if dist.holdout.is_file():
        student = (dsum or {}).get("student") or {}
        training = (dsum or {}).get("training") or {}
        add(
            "student",
            f"student ({training.get('student', 'distilled')})",
            "student",
            None,
            dist.holdout,
            {
                "params": student.get("params"),
                "latency_ms_per_image": student.get("latency_ms_per_image"),
                "backbone": training.get("student"),
            },
        )
    if dsum is not None:
        report["distill"] = {k: dsum.get(k) for k in ("student", "ensemble", "best_trial", "latency") if k in dsum}

    report["class_names"] = class_names or []
    report["comparison"] = _comparison(report)

    # -- the search --------------------------------------------------------------------------------------------
    if status is not None:
        report["status"] = {
            "counts": status["counts"],
            "budget_trials": status.get("budget_trials"),
            "best": status.get("best"),
            "trials": [
                {
                    k: t.get(k)
                    for k in (
                        "trial_id",
                        "trial_number",
                        "state",
                        "epochs",
                        "metric",
                        "metric_std",
                        "best_epoch",
                        "params",
                        "error",
                    )
                }
                for t in status["trials"]
            ],
        }
        front = front_points(status)
        if front is not None:
            report["front"] = front
    if run.results.is_file():
        report["history"] = search_history(read_results(run.results), metric, mode)
    try:
        trials, dists, study = study_trials(run, _spec_name(run))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign optuna.db must not cost the report
        notes.append(f"Optuna study unreadable: {exc}")
        trials, dists, study = [], {}, None
    n_complete = sum(1 for t in trials if t["state"] == "COMPLETE")
    report["study"] = {
        "trials": trials,
        "distributions": dists,
        "complete": n_complete,
        **param_importances(study, n_complete),
    }
    if not trials and status is not None:
        # No study: parallel coordinates from results.parquet's parameters.
        report["study"]["trials"] = [
            {
                "number": t.get("trial_number"),
                "state": t.get("state"),
                "value": t.get("metric"),
                "params": t.get("params", {}),
            }
            for t in status["trials"]
        ]
        report["study"]["source"] = "results.parquet"
    else:
        report["study"]["source"] = "optuna.db"
    return json_safe(report)


def _spec_name(run: RunLayout) -> str | None:
    import yaml

    try:
        return (yaml.safe_load(run.spec.read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError):
        return None


def _comparison(report: dict) -> list[dict]:
    """Best single trial vs each ensemble method vs the student: one row each, OOF and holdout scores.

    Methods other than the chosen one left no prediction files, so their row holds the
    scores ``ensembles.parquet`` keeps (accuracy, macro F1, log-loss).
    """
    rows: list[dict] = []
    models = report["models"]

    def from_model(key: str, name: str) -> dict | None:
        m = models.get(key)
        if m is None:
            return None
        row = {"name": name, "kind": m["kind"]}
        for split in ("oof", "holdout"):
            s = m.get(split) or {}
            for k in ("accuracy", "macro_f1", "balanced_accuracy", "weighted_f1", "log_loss"):
                row[f"{split}_{k}"] = s.get(k)
        cal = m.get("calibration") or {}
        row["ece"] = cal.get("ece")
        row["ece_scaled"] = cal.get("ece_scaled")
        row["temperature"] = cal.get("temperature")
        return row

    best = from_model("best_trial", models.get("best_trial", {}).get("label", "best trial"))
    if best:
        rows.append(best)
    chosen = (models.get("ensemble") or {}).get("method")
    for r in report.get("ensemble_table", []):
        if r.get("kind") != "ensemble":
            continue
        if r.get("name") == chosen and "ensemble" in models:
            row = from_model("ensemble", f"ensemble: {chosen} (chosen)")
        else:
            row = {
                "name": f"ensemble: {r['name']}",
                "kind": "ensemble",
                **{
                    f"{p}_{k}": r.get(f"{p}_{k}")
                    for p in ("oof", "holdout")
                    for k in ("accuracy", "macro_f1", "log_loss")
                },
            }
        rows.append(row)
    if "ensemble" in models and not any(r["name"].endswith("(chosen)") for r in rows):
        rows.append(from_model("ensemble", f"ensemble: {chosen} (chosen)"))
    student = from_model("student", models.get("student", {}).get("label", "student"))
    if student:
        rows.append(student)
    return rows
