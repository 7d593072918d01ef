"""``ferray export``: argument parsing over :func:`ferray.export.export_run`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers. Exit codes: 0 the bundle
was written, 1 a graph failed to export or disagreed with PyTorch, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands"]


def _cmd_export(args: argparse.Namespace) -> int:
    from ferray._console import to_stderr
    from ferray.export import ExportError, export_run

    try:
        path = export_run(args.run, args.out, echo=to_stderr)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bundle: {path}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "export",
        help="export a run's ensemble (and distilled student) as an ONNX bundle for `ferray predict`",
        description="Export the ensemble chosen by `ferray ensemble` (and the student of `ferray distill`, "
        "if any) as one ONNX graph per model that reads its weights from the bundle's weights files "
        "(hard links to the trials' files where the file system allows), and a manifest. "
        "Every graph is checked against PyTorch on random images (max difference 1e-4).",
    )
    p.add_argument("run", help="run directory of a sweep (with ensemble/ensemble.json)")
    p.add_argument(
        "--out", default=None, help="bundle folder to write (default RUN/bundle; an old bundle there is replaced)"
    )
    p.set_defaults(func=_cmd_export)
