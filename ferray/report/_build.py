"""``build_report``: a run's or a bundle's report as an HTML page, its figures and a JSON file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferray._io import atomic_write_json, atomic_write_text, json_safe
from ferray.errors import DataError
from ferray.run.layout import BundleLayout, ReportLayout, RunLayout

__all__ = ["build_report", "REPORT_FORMAT", "default_report_dir"]

#: ``report.json``'s ``format``: bumped when a key changes meaning.
REPORT_FORMAT = 1


def _is_bundle(path: Path) -> bool:
    return BundleLayout(path).manifest.is_file()


def default_report_dir(run_or_bundle: str | os.PathLike) -> Path:
    """``RUN/report`` for a run; ``<bundle>-report`` beside a bundle (a bundle's folder lists its own files)."""
    path = Path(run_or_bundle).absolute()
    if _is_bundle(path):
        return path.parent / f"{path.name}-report"
    return RunLayout(path).report


def build_report(
    run_or_bundle: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    inline: bool = False,
    top_confused: int = 5,
    echo: Callable[[str], Any] | None = None,
) -> Path:
    """Write the report of a run directory or an exported bundle; return the page's path.

    Writes ``out/index.html`` (opens offline), ``out/report.json`` (the same numbers) and
    ``out/figures/*.png`` (see :class:`~ferray.run.layout.ReportLayout`).

    For a run: the best single trial, the chosen ensemble and the distilled student, each
    with per-class precision/recall/F1/support, macro and weighted F1, balanced accuracy,
    the fold spread of its OOF rows, confusion matrices (counts and row-normalised) with the
    most confused pairs, calibration (reliability diagram, ECE, and a temperature fitted on
    OOF rows and judged on the holdout) and per-AU F1 for multi-task models; every ensemble
    method of ``ensembles.parquet``; the search's best-so-far curve, learning curves with
    ASHA's stops, Optuna parameter importances and parallel coordinates.

    For a bundle: its manifest (members, method, scores). With ``data`` (a bundle, or a run
    with an exported ``bundle/``): the ensemble and student evaluated on that dataset with
    classes matched by name; classes the model does not know are listed with their rows.

    Args:
        run_or_bundle: a sweep's run directory or a bundle folder.
        data: a data source (``ferray.data.load_source``) for cross-dataset evaluation.
        out: the report folder (default: :func:`default_report_dir`).
        inline: embed the figures in the page as data URIs (one file to share); they are
            written to ``figures/`` as well.
        top_confused: how many most-confused pairs to list per model.
        echo: progress lines (None: silent).

    Raises:
        ConfigError: not a run directory or a bundle.
        DataError: unreadable predictions or bundle; ``data`` on a run without a bundle.

    >>> build_report("runs/quickstart-20261130-120000")  # doctest: +SKIP
    PosixPath('runs/quickstart-20261130-120000/report/index.html')
    """
    from ferray import __version__
    from ferray.report._bundle import collect_bundle, cross_dataset
    from ferray.report._figures import draw_figures
    from ferray.report._html import render_html
    from ferray.report._run import collect_run

    say = echo or (lambda _s: None)
    if isinstance(top_confused, bool) or not isinstance(top_confused, int) or top_confused < 1:
        raise ValueError(f"top_confused is {top_confused!r}, but must be an integer >= 1")
    src = Path(run_or_bundle).absolute()
    if _is_bundle(src):
        report = collect_bundle(src, data=data, echo=say, top_confused=top_confused)
    else:
        report = collect_run(src, echo=say, top_confused=top_confused)
        if data is not None:
            run = RunLayout(src)
            if not _is_bundle(run.bundle):
                raise DataError(
                    f"--data on a run evaluates its exported bundle ({run.bundle}), which does not "
                    f"exist; run `ferray export {src}` first, or pass a bundle folder"
                )
            from ferray.predict import Bundle

            report["cross_dataset"] = json_safe(
                cross_dataset(Bundle.load(run.bundle), data, echo=say, top_confused=top_confused)
            )
    report = {"format": REPORT_FORMAT, "ferray": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **report}

    layout = ReportLayout(Path(out).absolute() if out is not None else default_report_dir(src))
    if layout.root.exists() and not layout.root.is_dir():
        raise DataError(f"{layout.root}: exists and is not a folder; choose another --out")
    layout.root.mkdir(parents=True, exist_ok=True)
    if layout.json.is_file() and layout.figures.is_dir():
        for old in layout.figures.glob("*.png"):  # figures of an earlier report in this folder
            old.unlink()
    say(f"report: drawing figures into {layout.figures}")
    figures = draw_figures(report, layout.figures)
    report["figures"] = {name: f"{ReportLayout.FIGURES}/{file}" for name, file in figures.items()}
    atomic_write_json(layout.json, json_safe(report))
    atomic_write_text(
        layout.index, render_html(report, figures, layout.figures, inline=inline, figures_rel=ReportLayout.FIGURES)
    )
    say(f"report: wrote {layout.index}")
    return layout.index
