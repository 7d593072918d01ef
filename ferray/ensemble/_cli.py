"""``ferray ensemble RUN``: argument parsing over :func:`ferray.ensemble.build_ensembles`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers. Exit codes: 0 the
ensemble was written, 2 bad input (a :class:`~ferray.errors.FerrayError`: not a run, too
many members asked for, no finished trial with predictions, members from different fold
plans), 130 interrupted.
"""

from __future__ import annotations

import argparse

__all__ = ["add_commands"]

_METHOD_CHOICES = ("greedy", "stacking", "mean", "vote", "all")


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from ferray._console import print_json, print_wide, to_stderr
    from ferray.ensemble import build_ensembles

    methods = None
    if args.method:
        methods = [m for value in args.method for m in value.split(",") if m]
    # Progress goes to stderr so that `--json` output stays parseable.
    report = build_ensembles(
        args.run,
        top=args.top,
        methods=methods,
        include_pruned=args.include_pruned,
        seed=args.seed,
        pool=args.pool,
        max_latency_ms=args.max_latency_ms,
        echo=to_stderr,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print_wide(report.render())
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ensemble`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "ensemble",
        help="ensemble a sweep's trials from their out-of-fold predictions",
        description="Fit ensembles (greedy selection, stacking, mean, vote) of a sweep's finished trials "
        "on their out-of-fold predictions, score them on the OOF rows (cross-validated, so no row's "
        "label scores its own prediction) and the holdout, and write RUN/ensemble/: ensembles.parquet, "
        "ensemble.json, and the chosen ensemble's (lowest OOF log-loss) oof.parquet and "
        "holdout.parquet. Stacking, mean and vote combine the top N trials by fold mean; greedy "
        "selection picks from a pool (by default every completed trial whose weights are on disk), "
        "so a lower-ranked trial that complements the others can join. Defaults come from the run's "
        "spec.yaml (ensemble: top_k, methods, seed, greedy.pool).",
    )
    p.add_argument("run", help="run directory of a sweep")
    p.add_argument(
        "--top",
        type=int,
        default=None,
        metavar="N",
        help="the N best finished trials by fold mean, which stacking, mean and vote combine and greedy's "
        "pool always holds (default: ensemble.top_k of the spec)",
    )
    p.add_argument(
        "--pool",
        default=None,
        metavar="all|top_k|N",
        help="the trials greedy selection picks from: all (every finished trial with predictions whose "
        "weights are on disk), top_k (the --top trials) or N (the best N) (default: "
        "ensemble.greedy.pool of the spec)",
    )
    p.add_argument(
        "--method",
        action="append",
        default=None,
        metavar="|".join(_METHOD_CHOICES),
        help="ensemble method; repeat or comma-separate for several, 'all' for every one "
        "(default: ensemble.methods of the spec)",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        metavar="MS",
        help="latency budget: the members together run within MS ms per image at batch 1, each costing its "
        "trial's measured latency_ms times its fold models; the top trials are the best that fit, greedy adds "
        "no member that would exceed it (default: ensemble.max_latency_ms of the spec, no budget)",
    )
    p.add_argument(
        "--include-pruned",
        action="store_true",
        help="also consider trials ASHA pruned (those that left prediction files)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="greedy tie-breaks and inner folds (default: ensemble.seed of the spec)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_ensemble)
    return p
