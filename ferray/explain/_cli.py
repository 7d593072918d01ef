"""``ferray explain BUNDLE|RUN IMAGE...``: argument parsing over :func:`ferray.explain.explain`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers. Exit codes: 0 overlays
written, 1 every input was skipped, 2 bad input (a :class:`~ferray.errors.FerrayError`:
unknown method, class or member, a bundle without safetensors weights, a backbone without a
known CAM layer), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands"]

#: Kept in step with ferray.explain.METHODS (tests check it); here so `--help` needs no torch.
_METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam", "hirescam", "ig")


def _cmd_explain(args: argparse.Namespace) -> int:
    from ferray._console import print_json, to_stderr
    from ferray.errors import DataError
    from ferray.explain import explain

    inputs = args.images[0] if len(args.images) == 1 else list(args.images)
    try:
        result = explain(
            args.target_dir,
            inputs,
            method=args.method,
            target=args.target,
            member=args.member,
            out=args.out,
            faces=args.faces,
            layer=args.layer,
            ig_steps=args.ig_steps,
            echo=to_stderr,
        )
    except DataError as exc:
        if str(exc).startswith("no image to explain"):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    if args.json:
        print_json(result.summary)
    else:
        for item in result.images:
            rec = next(r for r in result.summary["images"] if r["file"] == item.file.name)
            print(f"{item.file}\t{rec['predicted']['class']} {rec['predicted']['prob']:.3f}\ttarget {rec['target']}")
        print(result.grid)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``explain`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "explain",
        help="heat maps of what a bundle's or run's models look at (Grad-CAM family, integrated gradients)",
        description="Write overlay PNGs (face, heat map, predicted class and probability, target class), grid.png "
        "and explain.json for images. For an ensemble: each member's map (the mean of its fold "
        "models' maps) and the ensemble map, their ensemble-weighted mean. A bundle needs its "
        "weights/ safetensors copies. Images of another size or channel count are converted as "
        "training did.",
    )
    p.add_argument("target_dir", metavar="BUNDLE|RUN", help="an exported bundle folder or a sweep's run directory")
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, a folder (recursive), or a CSV with a 'path' or 'pixels' column",
    )
    p.add_argument(
        "--method",
        default="gradcam",
        metavar="|".join(_METHODS),
        help="gradcam (default), gradcam++, scorecam, eigencam, layercam, hirescam (pytorch-grad-cam) "
        "or ig (integrated gradients, captum)",
    )
    p.add_argument(
        "--target",
        default=None,
        metavar="CLASS",
        help="the class to explain, by name or index (default: each image's predicted class)",
    )
    p.add_argument(
        "--member",
        default=None,
        metavar="N",
        help="explain one member (index or trial id) or 'student' (default: the whole ensemble)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: RUN/report/explain, or BUNDLE-report/explain beside a bundle)",
    )
    p.add_argument(
        "--faces", action="store_true", help="find faces on whole photos (OpenCV Haar cascade) and explain each face"
    )
    p.add_argument(
        "--layer",
        default=None,
        metavar="PATH",
        help="CAM target layer below the backbone, e.g. 'stages[-2]' (default: the family's)",
    )
    p.add_argument("--ig-steps", type=int, default=32, metavar="N", help="integration steps of ig, >= 2 (default 32)")
    p.add_argument("--json", action="store_true", help="print explain.json instead of the files")
    p.set_defaults(func=_cmd_explain)
    return p
