"""``ferray distill RUN``: argument parsing over :func:`ferray.distill.distill_run`.

``ferray/cli.py`` adds the command with :func:`add_commands`, next to the search commands.

Exit codes: 0 done, 1 the student's training stopped, 2 bad input (a
:class:`~ferray.errors.FerrayError`: not a run, no ensemble, unknown backbone), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands"]


def _cmd_distill(args: argparse.Namespace) -> int:
    from ferray._console import to_stderr
    from ferray.distill import distill_run
    from ferray.training import TrainingFailed

    try:
        result = distill_run(
            args.run,
            student=_students(args.student),
            epochs=args.epochs,
            temperature=args.temperature,
            alpha=args.alpha,
            teacher=args.teacher,
            max_latency_ms=args.max_latency_ms,
            address=args.address,
            num_cpus=args.num_cpus,
            echo=to_stderr,
        )
    except TrainingFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    s = result.summary
    rows = [("student", s["student"]), ("ensemble", s["ensemble"]), ("best trial", s.get("best_trial") or {})]
    print(f"{'':<11} {'accuracy':>9} {'macro-F1':>9} {'params':>11} {'ms/img@1':>9} {'ms/img@64':>10}")
    for name, r in rows:
        lat = r.get("latency_ms_per_image") or {}
        print(
            f"{name:<11} {_num(r.get('accuracy'))} {_num(r.get('macro_f1'))} "
            f"{(r.get('params') or 0):>11,} {_num(lat.get('batch_1'), 9, 3)} {_num(lat.get('batch_64'), 10, 3)}"
        )
    print(f"student written to {result.output_dir}")
    return 0


def _students(values: list[str] | None) -> str | list[str] | None:
    """``--student a --student b,c`` -> ``["a", "b", "c"]``; one name stays a string; None: the spec's."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",")]
    return names[0] if len(names) == 1 else names


def _num(v, width: int = 9, digits: int = 4) -> str:
    return f"{v:>{width}.{digits}f}" if isinstance(v, (int, float)) else f"{'-':>{width}}"


def add_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``distill`` to the ``ferray`` command's sub-parsers."""
    p = subparsers.add_parser(
        "distill",
        help="train a small student on a sweep's ensemble and compare them on the holdout",
        description="Distil the chosen ensemble of a sweep (run `ferray ensemble RUN` first) into one small "
        "student backbone trained on every cross-validation row. The online teacher (default) runs "
        "the ensemble's member models on every augmented, mixed batch the student sees, each row "
        "scored only by the fold models that never trained on it; the fixed teacher uses the "
        "ensemble's stored out-of-fold probabilities. Several --student candidates are timed at "
        "batch 1 (--max-latency-ms drops the slow ones) and compared on one fold of the "
        "cross-validation rows. Writes RUN/distill/: the student's weights, config, holdout "
        "predictions and distill.json (student vs ensemble vs best trial: accuracy, macro-F1, "
        "parameters, latency; the teacher; the candidates). Settings default to the spec's "
        "distill: section.",
    )
    p.add_argument("run", help="run directory of a sweep that has an ensemble")
    p.add_argument(
        "--student",
        action="append",
        default=None,
        metavar="NAME",
        help="timm backbone of the student; repeat it or give a comma list for candidates "
        "(default: distill.student, e.g. mobilenetv3_small_050)",
    )
    p.add_argument(
        "--teacher",
        choices=("online", "fixed"),
        default=None,
        help="online: the member models score every training batch; fixed: the ensemble's stored "
        "out-of-fold probabilities (default: distill.teacher, online)",
    )
    p.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        metavar="MS",
        help="drop candidates slower than MS per image at batch 1 on this CPU "
        "(default: distill.max_latency_ms, no cap)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="training epochs (default: distill.epochs; null there: 3 x budget.max_epochs)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="softening temperature > 0 (default: distill.temperature)",
    )
    p.add_argument(
        "--alpha", type=float, default=None, help="weight of the soft-target loss in [0, 1] (default: distill.alpha)"
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, metavar="N", help="CPUs of a new local Ray (default: all)")
    p.set_defaults(func=_cmd_distill)
    return p
