"""``ferray prune RUN``: argument parsing over :func:`ferray.run.apply_retention`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers. Exit codes: 0 done (or
nothing to remove), 2 bad input (a :class:`~ferray.errors.FerrayError`: not a run directory,
``--keep-top`` < 1).
"""

from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def _cmd_prune(args: argparse.Namespace) -> int:
    from ferray._console import print_json
    from ferray.run.retention import apply_retention

    report = apply_retention(args.run, keep_top=args.keep_top, dry_run=args.dry_run, force=True)
    if args.json:
        print_json(report.to_dict())
    else:
        if report.dry_run and report.trials:
            print("dry run: nothing is changed; without --dry-run these would go:")
        print("\n".join(report.lines()))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``prune`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "prune",
        help="apply the retention policy to a run: drop ended trials' checkpoints and unneeded weights",
        description="Apply the run's retention policy (the spec's retention: section) to its ended trials: "
        "completed trials lose their epoch checkpoints and, outside the best "
        "max(ensemble.top_k, retention.keep_top) + retention.margin by fold mean, their weights "
        "(with ensemble.greedy.pool: all, only once an ensemble has considered them: greedy selection "
        "may pick any completed trial); "
        "pruned trials lose checkpoints and weights (unless retention.keep_pruned_weights); errored "
        "trials keep only their last checkpoint (for `ferray resume --retry-errored`). Metrics and "
        "prediction files always stay; running and stopped trials are never touched.",
    )
    p.add_argument("run", help="run directory of a sweep")
    p.add_argument(
        "--keep-top",
        type=int,
        default=None,
        metavar="N",
        help="the N best completed trials keep their weights (default: max(ensemble.top_k, "
        "retention.keep_top) + retention.margin); also prunes the weights greedy selection's "
        "pool keeps for the next ensemble; the run's ensemble members always keep theirs",
    )
    p.add_argument("--dry-run", action="store_true", help="change nothing; print what would be removed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_prune)
    return p
