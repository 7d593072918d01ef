"""``ferray submit | jobs | logs | stop | pull``: argument parsing over :mod:`ferray.cluster`.

``ferray/cli.py`` calls :func:`add_commands` with its sub-parsers; each handler imports the
library lazily. Exit codes: 0 done (a followed job succeeded), 1 a followed job failed or
was stopped, 2 bad input or a cluster that cannot be used (the message says why).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands"]


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _cmd_submit(args: argparse.Namespace) -> int:
    from ferray.cluster import exit_code, submit, submit_resume
    from ferray.errors import ConfigError

    if args.resume is not None:
        if args.spec is not None:
            raise ConfigError("--resume RUN continues a sweep from its run folder; give no SPEC with it")
        for flag, value in (("--storage", args.storage), ("--name", args.name), ("--data", args.data)):
            if value is not None:
                raise ConfigError(f"{flag}: a resumed sweep keeps its run folder, name and data; drop {flag}")
        job = submit_resume(
            args.resume,
            args.address,
            extend=args.extend,
            retry_errored=args.retry_errored,
            wait=args.wait,
            ship_ferray=not args.no_ship_ferray,
            env=args.env,
            finish=not args.no_finish,
            timeout=args.timeout,
            echo=print,
        )
    else:
        if args.extend or args.retry_errored:
            raise ConfigError("--extend and --retry-errored go with --resume RUN")
        job = submit(
            args.spec,
            args.address,
            storage=args.storage,
            name=args.name,
            wait=args.wait,
            data=args.data,
            ship_ferray=not args.no_ship_ferray,
            env=args.env,
            finish=not args.no_finish,
            timeout=args.timeout,
            echo=print,
        )
    if not args.wait:
        return 0
    print(f"job {job.job_id}: {job.status}; run directory: {job.run}")
    return exit_code(job.status)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _cmd_jobs(args: argparse.Namespace) -> int:
    import time

    from ferray._console import print_json
    from ferray.cluster import jobs

    found = jobs(args.address, all_jobs=args.all, timeout=args.timeout)
    if args.json:
        print_json([j.__dict__ for j in found])
        return 0
    if not found:
        print("no ferray jobs on this cluster" + ("" if args.all else " (--all lists every job)"))
        return 0
    rows = [("JOB", "STATUS", "COMMAND", "RUN", "STARTED", "TIME")]
    for j in found:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(j.start_time)) if j.start_time else "-"
        rows.append(
            (j.job_id, j.status, j.command or "(not ferray)", j.run or j.entrypoint[:40], started, _age(j.duration_s()))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from ferray.cluster import exit_code, logs

    status = logs(args.job, args.address, follow=args.follow, timeout=args.timeout, echo=print)
    if args.follow:
        _err(f"job {args.job}: {status}")
        return exit_code(status)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from ferray.cluster import stop

    status = stop(args.job, args.address, timeout=args.timeout)
    print(f"job {args.job}: {status}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from ferray.cluster import pull_run

    path = pull_run(args.run, args.dest, checkpoints=args.checkpoints, weights=not args.no_weights, echo=_err)
    print(path)
    return 0


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="the cluster's job server, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS); a token the "
        "cluster requires is read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``submit``, ``jobs``, ``logs``, ``stop`` and ``pull`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "submit",
        help="run a sweep on a Ray cluster as a Ray job (or resume one with --resume)",
        description="Submit a sweep to a Ray cluster's job server. The spec is checked here and travels with the "
        "job, with this machine's ferray package (unless --no-ship-ferray). Prints the job id and how "
        "to follow it; --wait follows its logs and exits with its outcome (0 succeeded, 1 otherwise).",
    )
    p.add_argument("spec", nargs="?", default=None, help="search spec YAML (default: the packaged quickstart)")
    _address(p)
    p.add_argument(
        "--storage",
        default=None,
        help="where the run directory goes: s3://BUCKET/PREFIX, gs://..., or a path every node sees "
        "(default ~/ferray-runs on the head node, lost with the cluster)",
    )
    p.add_argument("--name", default=None, help="run folder name (default <spec name>-<date-time>)")
    p.add_argument(
        "--data", default=None, metavar="SOURCE", help="replace the spec's data.source (as the cluster sees it)"
    )
    p.add_argument("--wait", action="store_true", help="follow the job's logs until it ends; exit with its outcome")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this environment variable's value (e.g. WANDB_API_KEY) to the job; repeatable; the "
        "value is read from this shell and never printed",
    )
    p.add_argument(
        "--no-ship-ferray",
        action="store_true",
        help="use the ferray installed on the cluster instead of sending this machine's",
    )
    p.add_argument(
        "--no-finish", action="store_true", help="stop after the trials: no ensemble, distillation or export"
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue a stopped or failed sweep from its run folder (STORAGE/NAME, as `submit` printed)",
    )
    p.add_argument("--extend", type=int, default=0, metavar="N", help="with --resume: add N trials to the budget")
    p.add_argument("--retry-errored", action="store_true", help="with --resume: also continue errored trials")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds each request to the cluster may take (default 30)",
    )
    p.set_defaults(func=_cmd_submit)

    p = subparsers.add_parser("jobs", help="list a cluster's ferray jobs, newest first")
    _address(p)
    p.add_argument("--all", action="store_true", help="every submitted job, not only ferray's")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds the request may take")
    p.set_defaults(func=_cmd_jobs)

    p = subparsers.add_parser("logs", help="print a job's logs (--follow: until it ends)")
    p.add_argument("job", help="job id (as `ferray submit` printed; `ferray jobs` lists them)")
    _address(p)
    p.add_argument(
        "--follow", action="store_true", help="print new lines until the job ends; exit 0 if it succeeded, 1 otherwise"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="with --follow: stop following after S seconds (the job keeps running)",
    )
    p.set_defaults(func=_cmd_logs)

    p = subparsers.add_parser("stop", help="stop a job (its sweep saves its state; `submit --resume` continues it)")
    p.add_argument("job", help="job id")
    _address(p)
    p.add_argument(
        "--timeout", type=float, default=90.0, metavar="S", help="seconds to wait for the job to stop (default 90)"
    )
    p.set_defaults(func=_cmd_stop)

    p = subparsers.add_parser(
        "pull",
        help="copy a run directory from storage (s3://, gs://, file://) to this machine",
        description="Copy a run folder from storage to a local folder, where `ferray status`, `ensemble` and "
        "`export` read it. Epoch checkpoints stay on storage unless --checkpoints; pulling again "
        "fetches only what changed.",
    )
    p.add_argument("run", help="the run folder on storage: STORAGE/NAME")
    p.add_argument("dest", nargs="?", default=None, help="local folder (default runs/NAME)")
    p.add_argument("--checkpoints", action="store_true", help="also copy the trials' epoch checkpoints")
    p.add_argument(
        "--no-weights",
        action="store_true",
        help="leave the fold weights on storage (status and report do not need them)",
    )
    p.set_defaults(func=_cmd_pull)
