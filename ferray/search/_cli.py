"""``ferray search``, ``ferray resume`` and ``ferray status``: argument parsing over :mod:`ferray.search`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers; each command
only parses arguments, calls a library function and returns an exit code (0 ok, 1 the
sweep ran but no trial succeeded, 2 bad input via :class:`~ferray.errors.FerrayError`,
130 interrupted).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

__all__ = ["add_commands"]

#: ``after_sweep(result, args) -> exit code``: what runs after a sweep ends well.
AfterSweep = Callable[[object, argparse.Namespace], int]


def _report(result, args) -> int:
    """Print a finished sweep's table and run directory; 1 when no trial produced a metric."""
    from ferray._console import print_wide
    from ferray.run.status import render_status

    print_wide(render_status(result.status))
    print(f"run directory: {result.run_dir} ({result.wall_seconds:.0f}s)")
    best = result.best
    if best is None or best["metric"] is None:
        print("no trial produced a fold-mean metric; see `ferray status` for the errors", file=sys.stderr)
        return 1
    after_sweep = getattr(args, "after_sweep", None)
    if after_sweep is not None and not getattr(args, "no_finish", False):
        return after_sweep(result, args)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from ferray._console import to_stderr
    from ferray.search import SearchInterrupted, dry_run, packaged_spec, run_search

    path = args.spec or packaged_spec("quickstart")
    if args.cluster_config is not None and not args.dry_run:
        from ferray.errors import ConfigError

        raise ConfigError(
            "--cluster-config plans against a launcher config's node types: it goes with --dry-run "
            "(a sweep runs on the cluster it is given with --address)"
        )
    if args.dry_run:
        print(
            dry_run(
                path,
                address=args.address,
                num_cpus=args.num_cpus,
                data=args.data,
                cluster_config=args.cluster_config,
                warm_start=args.warm_start,
            )
        )
        return 0
    try:
        result = run_search(
            path,
            storage=args.storage,
            name=args.name,
            data=args.data,
            address=args.address,
            num_cpus=args.num_cpus,
            live=not args.no_live,
            verbose=args.verbose,
            warm_start=args.warm_start,
            echo=to_stderr,
        )
    except SearchInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    return _report(result, args)


def _cmd_resume(args: argparse.Namespace) -> int:
    from ferray._console import to_stderr
    from ferray.search import SearchInterrupted, resume_search

    try:
        result = resume_search(
            args.run,
            extend=args.extend,
            retry_errored=args.retry_errored,
            address=args.address,
            num_cpus=args.num_cpus,
            live=not args.no_live,
            verbose=args.verbose,
            echo=to_stderr,
        )
    except SearchInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    return _report(result, args)


def _cmd_status(args: argparse.Namespace) -> int:
    from ferray._console import print_json, print_wide
    from ferray.run.status import get_status, render_status

    status = get_status(args.run, disk=True)
    if args.json:
        print_json(status)
    else:
        print_wide(render_status(status))
    return 0


def add_commands(subparsers: argparse._SubParsersAction, after_sweep: AfterSweep | None = None) -> None:
    """Add ``search``, ``resume`` and ``status`` to the ``ferray`` command's sub-parsers.

    ``after_sweep(result, args) -> exit code`` runs when a sweep or resume ends with a result
    (unless ``--no-finish``): the stages above search (ensemble, distill, export) are wired in
    by ``ferray/cli.py``; search never imports them. It rides on the parsed arguments as
    ``args.after_sweep``.
    """
    p = subparsers.add_parser(
        "search",
        help="run a hyperparameter sweep from a search spec (Optuna TPE + ASHA on Ray Tune)",
        description="Run a hyperparameter sweep. Without SPEC, runs the packaged quickstart spec "
        "(synthetic data, a few minutes on 2 CPUs).",
    )
    p.add_argument("spec", nargs="?", default=None, help="search spec YAML (default: the packaged quickstart)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved spec, fold plan and resource plan (per node type of the cluster at "
        "--address, or of this machine), then exit",
    )
    p.add_argument(
        "--cluster-config",
        default=None,
        metavar="YAML",
        help="with --dry-run: plan against a Ray cluster launcher config's node types, each at its "
        "max_workers (e.g. clusters/aws-gpu.yaml)",
    )
    p.add_argument(
        "--storage",
        default="runs",
        help="parent folder of the run directory, or a URI (s3://...) for Ray's storage (default runs)",
    )
    p.add_argument("--name", default=None, help="run directory name (default <spec name>-<date-time>)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, metavar="N", help="CPUs of a new local Ray (default: all)")
    p.add_argument("--data", default=None, metavar="SOURCE", help="replace the spec's data.source")
    p.add_argument(
        "--warm-start",
        action="append",
        default=[],
        metavar="PATH",
        help="start from an earlier run (run folder, storage URI of one, or Optuna study file); repeatable, "
        "added to the spec's search.warm_start",
    )
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of the live view")
    p.add_argument("--verbose", action="store_true", help="also show Ray's log lines and workers' output")
    p.add_argument(
        "--no-finish",
        action="store_true",
        help="stop after the trials: no ensemble, distillation or export (`ferray ensemble` later)",
    )
    p.set_defaults(func=_cmd_search, after_sweep=after_sweep)

    p = subparsers.add_parser(
        "resume",
        help="continue an interrupted sweep from its run directory (or add trials with --extend)",
        description="Continue a sweep: finished trials are kept, unfinished ones continue from their last "
        "epoch checkpoint with the same fold plan, Optuna study, ASHA rungs and spec. Refuses a "
        "folder that is not a sweep, an edited spec.yaml, or changed data.",
    )
    p.add_argument("run", help="run directory of a sweep")
    p.add_argument("--extend", type=int, default=0, metavar="N", help="add N trials (same space) to the budget")
    p.add_argument(
        "--retry-errored",
        action="store_true",
        help="also continue errored trials from their last checkpoint (default: they stay errored)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, metavar="N", help="CPUs of a new local Ray (default: all)")
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of the live view")
    p.add_argument("--verbose", action="store_true", help="also show Ray's log lines and workers' output")
    p.add_argument(
        "--no-finish",
        action="store_true",
        help="stop after the trials: no ensemble, distillation or export (`ferray ensemble` later)",
    )
    p.set_defaults(func=_cmd_resume, after_sweep=after_sweep)

    p = subparsers.add_parser("status", help="show a sweep's trials, best first, and its best configuration")
    p.add_argument("run", help="run directory of a sweep")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_status)
