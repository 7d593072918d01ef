"""The report as one HTML page: inline CSS, no scripts, no network; figures are PNG files beside it or inlined."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#212529;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #dee2e6;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.5em}.meta{color:#6c757d;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #dee2e6;padding:.25em .6em}
th{background:#f1f3f5;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.chosen td{background:#e7f5ff}img{max-width:100%;height:auto;display:block;margin:.6em 0;border:1px solid #f1f3f5}
.note{background:#fff9db;border-left:4px solid #fab005;padding:.4em .8em;margin:.4em 0}
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{border:1px solid #dee2e6;border-radius:6px;padding:.4em .8em;
min-width:9em}.card b{display:block;font-size:1.3em}nav a{margin-right:1em}code{background:#f1f3f5;padding:0 .2em}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, digits: int = 4, signed: bool = False) -> str:
    if (
        v is None
        or isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (isinstance(v, float) and not math.isfinite(v))
    ):
        return "–"
    if isinstance(v, int):
        return str(v)
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: Sequence[bool] | None = None,
    row_class: Sequence[str] | None = None,
) -> str:
    numeric = numeric or [False] * len(headers)
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        out.append(f"<tr{cls}>")
        for v, is_num in zip(row, numeric):
            out.append(
                f'<td class="num">{_num(v) if not isinstance(v, str) else _e(v)}</td>'
                if is_num
                else f"<td>{_e(v) if v is not None else '–'}</td>"
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


class _Page:
    def __init__(self, figures: dict[str, str], figures_dir: Path, inline: bool, rel: str) -> None:
        self.parts: list[str] = []
        self.figures, self.figures_dir, self.inline, self.rel = figures, figures_dir, inline, rel

    def add(self, s: str) -> None:
        self.parts.append(s)

    def fig(self, name: str, alt: str) -> None:
        if name not in self.figures:
            return
        file = self.figures[name]
        if self.inline:
            data = base64.b64encode((self.figures_dir / file).read_bytes()).decode()
            src = f"data:image/png;base64,{data}"
        else:
            src = f"{self.rel}/{file}"
        self.add(f'<img src="{_e(src)}" alt="{_e(alt)}" loading="eager">')


def _scores_table(model: dict) -> str:
    splits = [s for s in ("oof", "holdout", "data") if model.get(s)]
    keys = [
        ("rows", "rows"),
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("macro_f1", "macro F1"),
        ("weighted_f1", "weighted F1"),
        ("log_loss", "log-loss"),
    ]
    rows = [[s] + [model[s].get(k) for k, _ in keys] for s in splits]
    return _table(["rows of"] + [h for _, h in keys], rows, [False] + [True] * len(keys))


def _model_section(page: _Page, key: str, model: dict, class_names: Sequence[str], prefix: str = "") -> None:
    page.add(f'<h3 id="{_e(prefix + key)}">{_e(model["label"])}</h3>')
    facts = []
    for k, label in (
        ("trial_id", "trial"),
        ("method", "method"),
        ("members", "members"),
        ("weights", "weights"),
        ("fold_mean", "fold mean"),
        ("best_epoch", "best epoch"),
        ("backbone", "backbone"),
        ("params", "parameters"),
    ):
        v = model.get(k)
        if v not in (None, {}, []):
            if isinstance(v, float):
                v = _num(v)
            elif isinstance(v, list) and all(isinstance(x, float) for x in v):
                v = ", ".join(_num(x, 3) for x in v)
            elif isinstance(v, dict):
                v = ", ".join(f"{a}={_num(b, 4) if isinstance(b, float) else b}" for a, b in v.items())
            elif isinstance(v, list):
                v = ", ".join(str(x) for x in v)
            facts.append(f"<b>{_e(label)}</b>: {_e(v)}")
    if facts:
        page.add(f'<p class="meta">{"; ".join(facts)}</p>')
    if not model.get("evaluated_on"):
        page.add('<p class="note">no rows to evaluate</p>')
        return
    page.add(_scores_table(model))
    spread = model.get("fold_spread")
    if spread:
        page.add("<p>Fold spread of the out-of-fold rows (each fold scored on its own; mean ± population std):</p>")
        rows = [
            [f"fold {f['fold']}", f["rows"], f["accuracy"], f["macro_f1"], f["balanced_accuracy"]]
            for f in spread["folds"]
        ]
        rows.append(
            ["mean ± std", None]
            + [
                f"{_num(spread[k]['mean'])} ± {_num(spread[k]['std'])}"
                for k in ("accuracy", "macro_f1", "balanced_accuracy")
            ]
        )
        page.add(
            _table(["fold", "rows", "accuracy", "macro F1", "balanced accuracy"], rows, [False, True, True, True, True])
        )
    ev = model["evaluated_on"]
    per = model[ev]["per_class"]
    page.add(f"<p>Per class, on the {_e(ev)} rows:</p>")
    page.add(
        _table(
            ["class", "precision", "recall", "F1", "support"],
            [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in per.items()],
            [False, True, True, True, True],
        )
    )
    page.fig(f"{prefix}confusion_{key}", f"confusion matrices of {model['label']}")
    mc = model.get("most_confused") or []
    if mc:
        page.add("<p>Most confused pairs (share: of the true class's rows):</p>")
        page.add(
            _table(
                ["true", "predicted as", "rows", "share"],
                [[m["true"], m["predicted"], m["count"], m["share"]] for m in mc],
                [False, False, True, True],
            )
        )
    extra = model.get("by_data_class")
    if extra:
        page.fig(f"{prefix}by_data_class_{key}", f"what {model['label']} called each dataset class")
    cal = model.get("calibration")
    if cal:
        t = cal.get("temperature")
        text = (
            f"Calibration on the {_e(cal['evaluated_on'])} rows ({cal['rows']}): ECE {_num(cal['ece'])} "
            f"({cal['n_bins']} equal-width bins), log-loss {_num(cal['log_loss'])}."
        )
        if t is not None:
            text += (
                f" Temperature fitted on the {_e(cal.get('fitted_on'))} rows ({cal.get('fit_rows')}): "
                f"<b>T = {_num(t, 3)}</b> → ECE {_num(cal.get('ece_scaled'))}, log-loss "
                f"{_num(cal.get('log_loss_scaled'))} (accuracy unchanged)."
            )
        page.add(f"<p>{text}</p>")
        if cal.get("note"):
            page.add(f'<p class="note">{_e(cal["note"])}</p>')
        page.fig(f"{prefix}reliability_{key}", f"reliability diagram of {model['label']}")
    au = model.get("au")
    if au:
        for split, a in au.items():
            page.add(
                f"<p>Action units on the {_e(split)} rows: mean F1 {_num(a['mean_f1'])} "
                f"(threshold {a['threshold']}).</p>"
            )
        page.fig(f"au_{key}", f"per-AU F1 of {model['label']}")
        split = ev if ev in au else next(iter(au))
        page.add(
            _table(
                ["AU", "F1", "support"],
                [[k, v["f1"], v["support"]] for k, v in au[split]["per_au"].items()],
                [False, True, True],
            )
        )


def _run_sections(page: _Page, r: dict) -> None:
    names = r.get("class_names") or []
    comp = r.get("comparison") or []
    if comp:
        page.add('<h2 id="comparison">Best single trial vs ensembles vs student</h2>')
        heads = [
            "model",
            "OOF acc",
            "OOF macro F1",
            "holdout acc",
            "holdout bal. acc",
            "holdout macro F1",
            "holdout weighted F1",
            "holdout log-loss",
            "ECE",
            "T",
            "ECE (T)",
        ]
        rows = [
            [
                c["name"],
                c.get("oof_accuracy"),
                c.get("oof_macro_f1"),
                c.get("holdout_accuracy"),
                c.get("holdout_balanced_accuracy"),
                c.get("holdout_macro_f1"),
                c.get("holdout_weighted_f1"),
                c.get("holdout_log_loss"),
                c.get("ece"),
                c.get("temperature"),
                c.get("ece_scaled"),
            ]
            for c in comp
        ]
        page.add(
            _table(
                heads,
                rows,
                [False] + [True] * (len(heads) - 1),
                ["chosen" if c["name"].endswith("(chosen)") else "" for c in comp],
            )
        )
        page.fig("comparison", "holdout scores of the best trial, the ensembles and the student")
    if r.get("models"):
        page.add('<h2 id="models">Models</h2>')
        page.fig("per_class_f1", "per-class F1 of every model")
        for key, m in r["models"].items():
            _model_section(page, key, m, names)
    table = r.get("ensemble_table")
    if table:
        page.add(
            '<h2 id="ensembles">Ensemble table</h2><p>From <code>ensemble/ensembles.parquet</code>: '
            "members (the top trials) and every fitted method; OOF scores are cross-validated.</p>"
        )
        heads = [
            "kind",
            "name",
            "members",
            "fold mean",
            "OOF acc",
            "OOF macro F1",
            "OOF log-loss",
            "holdout acc",
            "holdout macro F1",
            "holdout log-loss",
            "gain acc (holdout)",
        ]
        rows = [
            [
                t.get("kind"),
                t.get("name"),
                t.get("members"),
                t.get("fold_mean"),
                t.get("oof_accuracy"),
                t.get("oof_macro_f1"),
                t.get("oof_log_loss"),
                t.get("holdout_accuracy"),
                t.get("holdout_macro_f1"),
                t.get("holdout_log_loss"),
                t.get("gain_holdout_accuracy"),
            ]
            for t in table
        ]
        page.add(
            _table(
                heads,
                rows,
                [False, False] + [True] * (len(heads) - 2),
                ["chosen" if t.get("chosen") else "" for t in table],
            )
        )
    status = r.get("status")
    if status or r.get("history") or (r.get("study") or {}).get("trials"):
        page.add('<h2 id="search">Search</h2>')
    if status:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in (status.get("counts") or {}).items())
        page.add(
            f"<p>Trials: {_e(counts or 'none')}"
            + (f" (budget {status['budget_trials']})" if status.get("budget_trials") else "")
            + ".</p>"
        )
        rows = [
            [
                t["trial_id"],
                t.get("trial_number"),
                t.get("state"),
                t.get("epochs"),
                f"{_num(t.get('metric'))} ± {_num(t.get('metric_std'))}" if t.get("metric") is not None else None,
                ", ".join(
                    f"{k}={_num(v, 4) if isinstance(v, float) else v}" for k, v in (t.get("params") or {}).items()
                ),
                t.get("error"),
            ]
            for t in status.get("trials", [])
        ]
        page.add(
            _table(
                ["trial", "#", "state", "epochs", f"{r.get('metric')} (fold mean ± std)", "parameters", "error"],
                rows,
                [False, True, False, True, True, False, False],
            )
        )
    front = r.get("front")
    if front and front.get("points"):
        best = [p for p in front["points"] if p["pareto"]]
        page.add(
            f"<h3>Pareto front</h3><p>Objectives: {_e(', '.join(front['objectives']))}. "
            f"{len(best)} of {len(front['points'])} ended trial(s) are Pareto-optimal (highlighted); "
            "pruned trials are faint.</p>"
        )
        page.fig("pareto_front", f"{front['y']} against {front['x']}, the Pareto front")
        page.add(
            _table(
                ["trial", "state", front["y"], front["x"]],
                [[p["trial_id"], p["state"], p["y"], p["x"]] for p in sorted(best, key=lambda p: p["x"])],
                [False, False, True, True],
            )
        )
    history = r.get("history")
    if history:
        pruned = history.get("pruned") or []
        page.add(
            f"<p>{history['epochs_spent']} trial-epochs reported; "
            f"{len(pruned)} trial(s) stopped early by ASHA (marked ✕).</p>"
        )
        page.fig("best_so_far", "best metric so far against epochs spent")
        page.fig("learning_curves", "learning curves of every trial")
    study = r.get("study") or {}
    if study.get("trials"):
        imp = study.get("importances") or {}
        if imp:
            page.add("<h3>Parameter importances</h3>")
            page.fig("importances", "parameter importances")
            page.add(_table(["parameter", "importance"], [[k, v] for k, v in imp.items()], [False, True]))
        if study.get("note"):
            page.add(f'<p class="note">Parameter importances: {_e(study["note"])}</p>')
        page.add(f"<h3>Parallel coordinates</h3><p>Trials from <code>{_e(study.get('source'))}</code>.</p>")
        page.fig("parallel_coordinates", "parallel coordinates of the sampled parameters")


def _bundle_sections(page: _Page, r: dict) -> None:
    b = r["bundle"]
    page.add('<h2 id="bundle">Bundle</h2>')
    inp = b.get("input") or {}
    page.add(
        f"<p>Classes: {_e(', '.join(b['classes']))}. Input: {_e(inp.get('size'))}×{_e(inp.get('size'))}×"
        f"{_e(inp.get('channels'))} uint8 ({_e(inp.get('color'))}). Method: <b>{_e(b.get('method'))}</b>"
        + (f", weights {_e(', '.join(_num(w, 3) for w in b['weights']))}" if b.get("weights") else "")
        + (f"; student: {_e((b.get('student') or {}).get('backbone'))}" if b.get("student") else "")
        + ".</p>"
    )
    rows = [[m.get("name"), m.get("backbone"), m.get("folds"), (m.get("score") or {}).get("cv")] for m in b["members"]]
    page.add(_table(["member", "backbone", "folds", "cross-validation metric"], rows, [False, False, True, True]))
    scores = b.get("ensemble_scores") or {}
    if scores:
        page.add("<p>The ensemble's scores when it was chosen (from the run):</p>")
        page.add(_table(["score", "value"], [[k, v] for k, v in scores.items()], [False, True]))
    if b.get("calibration"):
        page.add(f"<p>Calibration stored in the bundle: {_e(b['calibration'])}</p>")
    cross = r.get("cross_dataset")
    if cross:
        _cross_section(page, cross, r.get("class_names") or [])


def _cross_section(page: _Page, cross: dict, names: Sequence[str]) -> None:
    page.add('<h2 id="cross">Cross-dataset evaluation</h2>')
    m = cross["class_match"]
    page.add(
        f"<p>Data: <code>{_e(cross['source'])}</code>, {cross['rows']} images; {cross['scored_rows']} of them "
        "belong to a class the model knows and are scored.</p>"
    )
    page.add(_table(["dataset class", "model class"], [[d, c] for d, c in m["mapping"].items()]))
    if m["unknown"]:
        page.add(
            '<p class="note">Classes the model does not know (their rows are not scored; what the model '
            "called them is in the last figure of each model): "
            + _e(", ".join(f"{c} ({cross['unknown_rows'].get(c, 0)} rows)" for c in m["unknown"]))
            + "</p>"
        )
    if m["unseen"]:
        page.add(f'<p class="note">Model classes without rows in this dataset: {_e(", ".join(m["unseen"]))}</p>')
    page.fig("cross_per_class_f1", "per-class F1 on the other dataset")
    for key, model in cross["models"].items():
        _model_section(page, key, model, names, prefix="cross_")


def render_html(
    report: dict,
    figures: dict[str, str],
    figures_dir: Path,
    *,
    inline: bool = False,
    figures_rel: str = "figures",
    echo: Callable[[str], Any] | None = None,
) -> str:
    """The page of ``report``; figures are ``<img src="figures_rel/NAME.png">`` or data URIs (``inline``)."""
    page = _Page(figures, figures_dir, inline, figures_rel)
    title = f"ferray report: {report.get('name')}"
    page.add(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style>'
        "</head><body>"
    )
    page.add(
        f'<h1>{_e(title)}</h1><p class="meta">{_e(report["kind"])} <code>{_e(report["source"])}</code>; '
        f"written {_e(report.get('created', ''))} by ferray {_e(report.get('ferray', ''))}. "
        f"The same numbers are in <code>report.json</code>.</p>"
    )
    for n in report.get("notes") or []:
        page.add(f'<p class="note">{_e(n)}</p>')
    if report["kind"] == "run":
        _run_sections(page, report)
        if report.get("cross_dataset"):
            _cross_section(page, report["cross_dataset"], report.get("class_names") or [])
    else:
        _bundle_sections(page, report)
    page.add("</body></html>\n")
    return "".join(page.parts)
