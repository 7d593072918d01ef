"""``ferray report RUN|BUNDLE`` and ``ferray evaluate BUNDLE|RUN --data SOURCE``: argument parsing over
:func:`ferray.report.build_report` and :func:`ferray.report.evaluate_bundle`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers. Exit codes: 0 the report was written (the
evaluation printed), 2 bad input (a :class:`~ferray.errors.FerrayError`: not a run or bundle,
unreadable files, ``--data`` on a run without a bundle, data sharing no class with the model),
130 interrupted.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_commands"]


def _cmd_report(args: argparse.Namespace) -> int:
    from ferray._console import to_stderr
    from ferray.report import build_report

    # Progress goes to stderr so that `--json` output stays parseable.
    page = build_report(
        args.target, data=args.data, out=args.out, inline=args.inline, top_confused=args.top_confused, echo=to_stderr
    )
    if args.json:
        print((page.parent / "report.json").read_text())
    else:
        print(page)
    if args.open:
        import webbrowser

        webbrowser.open(page.as_uri())
    return 0


def _add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``report`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "report",
        help="an HTML report of a run or a bundle: per-class scores, confusion, calibration, search",
        description="Write an offline HTML page (figures as PNG files beside it) and report.json with the same "
        "numbers. For a run: the best single trial, the chosen ensemble and the distilled student "
        "(per-class precision/recall/F1/support, macro and weighted F1, balanced accuracy, fold spread, "
        "confusion matrices and most confused pairs, reliability diagram, ECE and a temperature fitted "
        "on out-of-fold rows, per-AU F1), every ensemble method, and the search (best-so-far, learning "
        "curves with ASHA's stops, Optuna parameter importances, parallel coordinates). For a bundle: "
        "its manifest; with --data, the bundle evaluated on another dataset, classes matched by name.",
    )
    p.add_argument("target", metavar="RUN|BUNDLE", help="a sweep's run directory or an exported bundle folder")
    p.add_argument(
        "--data",
        default=None,
        metavar="SOURCE",
        help="evaluate the bundle (a run's: RUN/bundle) on this dataset (a path or 'synthetic:...'); "
        "classes are matched by name and unknown ones listed",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="report folder (default: RUN/report, or BUNDLE-report beside a bundle)",
    )
    p.add_argument("--inline", action="store_true", help="embed the figures in index.html (one file to share)")
    p.add_argument(
        "--top-confused",
        type=int,
        default=5,
        metavar="N",
        help="most confused class pairs listed per model (default 5)",
    )
    p.add_argument("--json", action="store_true", help="print report.json instead of the page's path")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.set_defaults(func=_cmd_report)
    return p


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ferray._console import print_json, print_wide, to_stderr
    from ferray.report import evaluate_bundle

    if args.out and os.path.isdir(args.out):
        from ferray.errors import ConfigError

        raise ConfigError(
            f"--out {args.out}: is a folder; give a file name, e.g. {os.path.join(args.out, 'evaluation.json')}"
        )
    # Progress goes to stderr so that `--json` output stays parseable.
    result = evaluate_bundle(args.target, args.data, student=args.student, echo=to_stderr)
    doc = result.to_dict()
    if args.out:
        from ferray._io import atomic_write_json

        atomic_write_json(args.out, doc)
        to_stderr(f"evaluate: wrote {args.out}")
    if args.json:
        print_json(doc)
    else:
        print_wide(result.render())
    return 0


def _add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "evaluate",
        help="score a bundle on another dataset: accuracy and macro-F1 with 95%% bootstrap intervals",
        description="Score an exported bundle's ensemble (or its student) on a dataset, classes matched by "
        "canonical name (happiness = happy, anger = angry). Prints accuracy and macro-F1 with seeded "
        "95% bootstrap intervals (1000 resamples), balanced accuracy and per-class precision, recall, "
        "F1 and support. Data classes the model lacks (contempt for a FER2013 model) are listed with "
        "their row counts and excluded from every score; data sharing no class with the model is an "
        "error.",
    )
    p.add_argument(
        "target",
        metavar="BUNDLE|RUN",
        help="an exported bundle folder, or a run directory (its RUN/bundle; `ferray export RUN` first)",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="the dataset: a path or 'synthetic:...' (as `ferray data check` takes it)",
    )
    p.add_argument("--student", action="store_true", help="score the bundle's distilled student, not its ensemble")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON to FILE (atomically)")
    p.set_defaults(func=_cmd_evaluate)
    return p


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` and ``evaluate`` to the ``ferray`` command's sub-parsers."""
    _add_report_parser(subparsers)
    _add_evaluate_parser(subparsers)
