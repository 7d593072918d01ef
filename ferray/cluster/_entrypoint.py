"""What a submitted sweep runs on the cluster: ``python -m ferray.cluster search|resume ...``.

The same sweep as ``ferray search`` / ``ferray resume`` (library calls, not a shell-out),
plus what a job on a cluster needs that a laptop run does not:

* with a storage URI, the driver's files (manifest, spec, folds, Optuna study, results,
  log, TensorBoard) are pushed to the run folder on storage every ``--push-every``
  seconds and when the job ends, however it ends (success, error, ``ferray stop``), so a
  job stopped or lost with its cluster can be resumed from storage;
* after the trials, the trials' predictions and weights are pulled from storage for the
  ensemble, distillation and export stages, whose outputs are pushed too: the run folder
  on storage is then complete (``ferray pull`` copies it to a laptop);
* ``resume`` takes the run folder's URI: it pulls the driver's files and continues the
  sweep from Tune's state and the trials' checkpoints on storage.

Exit codes as ``ferray search``: 0 done, 1 no trial produced a metric (or a stage failed),
2 bad input, 130 interrupted or stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from contextlib import nullcontext
from pathlib import Path

from ferray.errors import FerrayError
from ferray.run.status import render_status

__all__ = ["main", "Pusher"]


def _out(line: str) -> None:
    print(line, flush=True)


class Pusher:
    """While the block runs, push a run directory to storage every ``every`` seconds; push once more at the end."""

    def __init__(self, run_dir: Path, uri: str, every: float = 60.0, echo=_out):
        self.run_dir, self.uri, self.every, self.echo = Path(run_dir), uri, every, echo
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ferray-push", daemon=True)
        self._lock = threading.Lock()

    def push(self, final: bool = False) -> None:
        from ferray.cluster._errors import ClusterError
        from ferray.cluster._storage import push_run

        if not self.run_dir.is_dir():
            return
        with self._lock:
            try:
                push_run(self.run_dir, self.uri, echo=self.echo if final else None)
            except ClusterError as exc:
                self.echo(
                    f"warning: {exc} (the run stays in {self.run_dir.absolute()} on this node"
                    + ("" if final else "; retrying")
                    + ")"
                )

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.push()

    def __enter__(self) -> Pusher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 60)
        self.push(final=True)


def _report(result) -> int:
    from ferray._console import print_wide

    print_wide(render_status(result.status))
    best = result.best
    if best is None or best["metric"] is None:
        _out("no trial produced a fold-mean metric; see `ferray status` for the errors")
        return 1
    return 0


def _finish(run_dir: Path, remote: str | None, num_cpus: int | None) -> int:
    from ferray.cluster._storage import pull_run
    from ferray.pipeline import finish_run

    if remote is not None:  # the stages read the trials' predictions and weights locally
        pull_run(remote, run_dir, checkpoints=False, weights=True, echo=_out)
    done = finish_run(run_dir, num_cpus=num_cpus, echo=_out)
    for stage, why in done.skipped.items():
        _out(f"{stage}: skipped ({why})")
    if done.ensemble is not None:
        from ferray._console import print_wide

        print_wide(done.ensemble.render())
    if done.bundle is not None:
        _out(f"bundle: {done.bundle}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from ferray.cluster._errors import ClusterError
    from ferray.cluster._storage import is_empty, is_uri, run_uri

    if is_uri(args.storage):
        storage, local, remote = args.storage, Path("runs") / args.name, run_uri(args.storage, args.name)
    else:
        storage, remote = os.path.expanduser(args.storage), None
        local = Path(storage) / args.name
    if remote is not None and not is_empty(remote):
        # Tune would write a second experiment over the first one's state and trial folders.
        raise ClusterError(
            f"{remote} already holds a sweep (or part of one): continue it with `ferray submit "
            f"--resume {remote} --address ...`, or pass another --name"
        )
    from ferray.search import SearchInterrupted, run_search

    return _run_pushing(
        lambda: run_search(
            args.spec, storage=storage, name=args.name, data=args.data, num_cpus=args.num_cpus, live=False, echo=_out
        ),
        args,
        local,
        remote,
        SearchInterrupted,
    )


def _resume(args: argparse.Namespace) -> int:
    from ferray.cluster._storage import is_uri, pull_run

    if is_uri(args.run):
        remote: str | None = args.run.rstrip("/")
        local = pull_run(remote, checkpoints=False, weights=False, echo=_out)  # to runs/NAME
    else:
        remote, local = None, Path(os.path.expanduser(args.run))
    from ferray.search import SearchInterrupted, resume_search

    return _run_pushing(
        lambda: resume_search(
            local, extend=args.extend, retry_errored=args.retry_errored, num_cpus=args.num_cpus, live=False, echo=_out
        ),
        args,
        local,
        remote,
        SearchInterrupted,
    )


def _run_pushing(sweep, args: argparse.Namespace, local: Path, remote: str | None, interrupted) -> int:
    """Run ``sweep()`` (a search or a resume) while the run folder is pushed to ``remote``,
    then the post-sweep stages; the exit code of the job."""
    pusher = Pusher(local, remote, args.push_every) if remote else nullcontext()
    with pusher:
        try:
            result = sweep()
        except interrupted as exc:
            _out(f"interrupted: {exc}")
            _out(f"resume: ferray submit --resume {remote or local.absolute()} --address ...")
            return 130
        code = _report(result)
        if code == 0 and not args.no_finish:
            code = _finish(result.run_dir, remote, args.num_cpus)
    _out(f"run directory: {remote or result.run_dir}")
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ferray.cluster",
        description="Run a ferray sweep inside a Ray job (what `ferray submit` starts).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local Ray (only without a cluster)")
    common.add_argument("--no-finish", action="store_true", help="no ensemble, distillation or export afterwards")
    common.add_argument(
        "--push-every",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds between uploads of the run directory to a storage URI (default 60)",
    )
    p = commands.add_parser("search", parents=[common], help="run a sweep")
    p.add_argument("spec", help="search spec YAML")
    p.add_argument("--storage", required=True, help="storage URI, or a path on the cluster (a shared filesystem)")
    p.add_argument("--name", required=True, help="run folder name")
    p.add_argument("--data", default=None, help="replace the spec's data.source")
    p = commands.add_parser("resume", parents=[common], help="continue a sweep from its run folder")
    p.add_argument("run", help="the run folder: STORAGE_URI/NAME or a path on the cluster")
    p.add_argument("--extend", type=int, default=0)
    p.add_argument("--retry-errored", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import ferray

    _out(
        f"ferray job: {args.command} with ferray {ferray.__version__} from {Path(ferray.__file__).parent}, "
        f"Ray at {os.environ.get('RAY_ADDRESS') or '(a new local Ray)'}"
    )

    try:
        return _search(args) if args.command == "search" else _resume(args)
    except FerrayError as exc:
        _out(f"error: {exc}")
        return 2
    except KeyboardInterrupt:  # stopped before the sweep could handle it (Tune saves its state itself)
        _out("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
