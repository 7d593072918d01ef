"""``ferray predict``: argument parsing over :func:`ferray.predict.predict` (no torch, no Ray).

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers; ``python -m ferray.predict``
runs the same command alone. Exit codes: 0 predictions written, 1 every input was skipped,
2 bad input (a :class:`~ferray.errors.FerrayError`: bundle, paths, options).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "add_commands"]


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ferray.errors import DataError
    from ferray.predict import predict, write_predictions
    from ferray.predict._writers import OUTPUT_SUFFIXES, format_table

    if args.out is not None and Path(args.out).suffix.lower() not in OUTPUT_SUFFIXES:
        # before any image is read: a typo in --out must not cost a whole folder's predictions
        raise DataError(f"--out {args.out}: use a .csv or .json file (or no --out for a table on stdout)")
    preds = predict(
        args.bundle,
        args.input,
        student=args.student,
        tta=args.tta,
        faces=args.faces,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        calibrated=not args.no_calibration,
    )
    # stderr: stdout stays a table, and files carry it too (JSON "calibration", CSV "temperature")
    print(f"probabilities: {preds.calibration}", file=sys.stderr)
    for s in preds.skipped:
        print(
            f"skipped: {s.reason}" if s.reason.startswith(s.source) else f"skipped: {s.source}: {s.reason}",
            file=sys.stderr,
        )
    if args.out is not None:
        path = write_predictions(preds, args.out)
        print(f"wrote {path}: {len(preds)} prediction(s), {len(preds.skipped)} skipped", file=sys.stderr)
    elif preds:
        print(format_table(preds))
    if not preds and preds.skipped:
        print("error: no input could be predicted", file=sys.stderr)
        return 1
    return 0


DESCRIPTION = (
    "Predict class probabilities with a bundle from `ferray export`. INPUT is an image, a folder "
    "(recursive: .jpg .jpeg .png .bmp .tif .tiff) or a CSV with a 'path' column (relative to the CSV) "
    "or a FER2013 'pixels' column. Unreadable images are reported and skipped."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``predict`` arguments (shared by ``ferray predict`` and ``python -m ferray.predict``)."""
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder (from `ferray export`)")
    p.add_argument("input", metavar="INPUT", help="image file, folder, or CSV")
    p.add_argument("--student", action="store_true", help="use the distilled student instead of the ensemble")
    p.add_argument("--tta", action="store_true", help="also predict each image's mirror image and average")
    p.add_argument(
        "--faces",
        action="store_true",
        help="find faces on whole photos (OpenCV Haar cascade); one prediction per face, with its box",
    )
    p.add_argument(
        "--out", default=None, metavar="FILE", help="write FILE.csv or FILE.json (default: a table on stdout)"
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="the graph's raw probabilities; by default the bundle's temperature T is applied, "
        "softmax(log p / T) (T = 1 for a bundle that stores none)",
    )
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_cmd_predict)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "predict",
        help="predict emotions for images with an exported bundle (onnxruntime; no torch needed)",
        description=DESCRIPTION,
    )
    add_arguments(p)
