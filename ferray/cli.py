"""The ``ferray`` command line: a table of commands, each a thin call into the library.

Exit codes: 0 success, 1 the work ran but found errors (``data check``) or failed
(a training run that stopped), 2 bad input (a :class:`~ferray.errors.FerrayError`),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence

# Each stage's command module imports argparse alone; its handlers import the stage when run.
from ferray.cluster import _cli as _cluster_cli
from ferray.distill import _cli as _distill_cli
from ferray.ensemble import _cli as _ensemble_cli
from ferray.errors import FerrayError
from ferray.explain import _cli as _explain_cli
from ferray.export import _cli as _export_cli
from ferray.predict import _cli as _predict_cli
from ferray.report import _cli as _report_cli
from ferray.search import _cli as _search_cli
from ferray.search import _prune_cli

__all__ = ["command_table", "iter_commands", "main"]

#: A command's handler: parsed arguments -> exit code.
Handler = Callable[[argparse.Namespace], int]


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help at spaces only, so that a flag (``--no-ship-ferray``) is never split at a hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )


class _Parser(argparse.ArgumentParser):
    """The ``ferray`` parser; its sub-parsers are of this class too, and so share its help layout."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _print_help_of(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command word given without its subcommand (``ferray data``): its help, exit 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="dataset path, prepared .parquet, or 'synthetic:basic7?count=...'")
    p.add_argument("--size", type=int, default=None, help="square image side (default: the source's)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grayscale, 3 = RGB")
    p.add_argument("--strict", action="store_true", help="unreadable images are errors, not skipped")


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from ferray.data import prepare

    data = prepare(args.source, args.out, size=args.size, channels=args.channels, strict=args.strict)
    h, w, c = data.image_shape
    print(f"wrote {args.out}: {len(data)} rows, {h}x{w}x{c}, classes {list(data.class_names)}")
    for warning in data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from ferray._console import print_json, print_wide
    from ferray.data import check

    report = check(args.source, size=args.size, channels=args.channels, strict=args.strict)
    if args.json:
        print_json(report.to_dict())
    else:
        print_wide(report.render())
    return 0 if report.ok else 1


def _cmd_data_grid(args: argparse.Namespace) -> int:
    from ferray.data import load_source, render_grid

    data = load_source(args.source, size=args.size, channels=args.channels, strict=args.strict)
    path = render_grid(data, per_class=args.per_class, path=args.out)
    print(f"wrote {path}")
    return 0


def _cmd_data_folds(args: argparse.Namespace) -> int:
    from ferray.data import load_source, plan_folds

    data = load_source(args.source, size=args.size, channels=args.channels, strict=args.strict)
    plan = plan_folds(data, args.k, seed=args.seed, holdout=args.holdout)
    print(plan.summary(data))
    if args.out:
        plan.save(args.out)
        print(f"wrote {args.out}")
    return 0


#: Keys only a search spec has: `ferray train SPEC` trains the spec's fixed base config.
_SPEC_ONLY_KEYS = ("space", "budget", "search", "tracking", "ensemble", "distill", "name")


def _train_config(path: str):
    """``(config, stall limits)``: a training config file as is with ``None``, or a search spec's base
    config with its ``budget.startup_timeout_s`` / ``budget.stall_timeout_s``."""
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return path, None  # the loader reports it with the file and line
    if isinstance(doc, dict) and any(k in doc for k in _SPEC_ONLY_KEYS):
        from ferray.search import load_search_spec

        spec = load_search_spec(path)
        return spec.base_config(), spec.budget.stall_limits()
    return path, None


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ferray.training import StallLimits, TrainingFailed, train
    from ferray.training.watch import STALLED

    config, limits = _train_config(args.config)
    limits = limits or StallLimits()
    if args.startup_timeout is not None:
        limits = replace(limits, startup_s=args.startup_timeout)
    if args.stall_timeout is not None:
        limits = replace(limits, every_s=args.stall_timeout)
    try:
        result = train(
            config,
            source=args.data,
            output_dir=args.output,
            address=args.address,
            num_cpus=args.num_cpus,
            limits=limits,
        )
    except TrainingFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        if str(exc).startswith(f"training stopped: {STALLED}:"):
            print(
                "hint: the bounds are --startup-timeout and --stall-timeout (by default a spec's "
                "budget.startup_timeout_s and budget.stall_timeout_s)",
                file=sys.stderr,
            )
        return 1
    final = result.final
    print(
        f"done: {len(result.history)} epochs, fold-mean {final.get('metric', float('nan')):.4f}; "
        f"outputs in {result.output_dir}"
    )
    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ferray._console import print_json
    from ferray.doctor import diagnose, render

    report = diagnose(clean_ray_sessions=args.clean_ray_sessions)
    if args.json:
        print_json(report)
    else:
        print(render(report))
    return 0 if report["ok"] else 1


def _finish(result, args: argparse.Namespace) -> int:
    """After ``ferray search``/``resume``: the ensemble, distillation and export the spec enables."""
    from ferray._console import print_wide, to_stderr
    from ferray.pipeline import finish_run

    done = finish_run(result.run_dir, address=args.address, num_cpus=args.num_cpus, echo=to_stderr)
    if done.ensemble is not None:
        print_wide(done.ensemble.render())
    for stage, why in done.skipped.items():
        to_stderr(f"{stage}: skipped ({why})")
    if done.distill is not None:
        s = done.distill.summary
        print(
            f"student: {s['student'].get('accuracy', float('nan')):.4f} holdout accuracy "
            f"(ensemble {s['ensemble'].get('accuracy', float('nan')):.4f}); {done.distill.output_dir}"
        )
    if done.bundle is not None:
        print(f"bundle: {done.bundle}  (ferray predict {done.bundle} IMAGES)")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from ferray import __version__

    parser = _Parser(
        prog="ferray",
        description="Distributed hyperparameter search for facial expression recognition.",
        epilog="`ferray COMMAND --help` describes a command. Exit codes: 0 success, 1 the work ran but failed or "
        "found errors, 2 bad input, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ferray {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="prepare, check and inspect datasets")
    data_cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=_print_help_of(data))

    p = data_cmds.add_parser("prepare", help="decode a dataset once into a prepared Parquet file")
    _source_options(p)
    p.add_argument("--out", required=True, help="output .parquet file")
    p.set_defaults(func=_cmd_data_prepare)

    p = data_cmds.add_parser("check", help="summarise a dataset and report problems (exit 1 on errors)")
    _source_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_data_check)

    p = data_cmds.add_parser("grid", help="write a PNG grid of samples per class")
    _source_options(p)
    p.add_argument("--out", required=True, help="output .png file")
    p.add_argument("--per-class", type=int, default=8, metavar="N", help="samples per class (default 8)")
    p.set_defaults(func=_cmd_data_grid)

    p = data_cmds.add_parser("folds", help="print (and save) a k-fold plan")
    _source_options(p)
    p.add_argument("-k", type=int, default=5, metavar="N", help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--holdout", default="auto", help="auto | test | none | a fraction (default auto)")
    p.add_argument("--out", default=None, help="save the plan as .parquet")
    p.set_defaults(func=_cmd_data_folds)

    p = commands.add_parser(
        "doctor", help="check the installation: versions, Ray internals in use, devices, Ray's temporary folders"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--clean-ray-sessions",
        action="store_true",
        help="delete Ray session folders older than a day (keeps the 3 newest)",
    )
    p.set_defaults(func=_cmd_doctor)

    p = commands.add_parser("train", help="train one configuration on all folds in parallel (Ray Train)")
    p.add_argument("config", help="training configuration YAML, or a search spec (its base config is trained)")
    p.add_argument("--data", default=None, metavar="SOURCE", help="replace the config's data.source")
    p.add_argument("--output", default=None, metavar="DIR", help="output directory (default runs/train-<time>)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, metavar="N", help="CPUs of a new local Ray (default: all)")
    p.add_argument(
        "--startup-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="fail as stalled when the first epoch's report takes longer (default: a spec's "
        "budget.startup_timeout_s, else 900)",
    )
    p.add_argument(
        "--stall-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="fail as stalled when a later report takes longer (default: a spec's "
        "budget.stall_timeout_s, else max(300, 5x the longest epoch))",
    )
    p.set_defaults(func=_cmd_train)

    # The stages' commands, each added by its stage's ``add_commands``, in `ferray --help`'s order.
    _search_cli.add_commands(commands, after_sweep=_finish)
    _prune_cli.add_commands(commands)
    _ensemble_cli.add_commands(commands)
    _distill_cli.add_commands(commands)
    _export_cli.add_commands(commands)
    _predict_cli.add_commands(commands)
    _cluster_cli.add_commands(commands)
    _report_cli.add_commands(commands)
    _explain_cli.add_commands(commands)
    return parser


def iter_commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """``(command words, sub-parser, one-line help)`` for every command that runs something, in the
    parser's order (``ferray data`` is a group: its ``prepare``, ``check``, ... are listed instead)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                yield from iter_commands(sub, (*words, name))
            else:
                yield (*words, name), sub, helps.get(name) or ""


def command_table(parser: argparse.ArgumentParser | None = None) -> dict[str, Handler]:
    """Command words -> handler of every command ``parser`` (by default ``ferray``'s) runs.

    >>> command_table()["data prepare"].__name__
    '_cmd_data_prepare'
    """
    parser = _build_parser() if parser is None else parser
    return {" ".join(words): sub.get_default("func") for words, sub, _ in iter_commands(parser)}


def _predict_only_parser() -> argparse.ArgumentParser:
    """``ferray predict`` alone: its parser imports nothing but the predict package, so it runs
    where only ``ferray[predict]``'s packages are installed (no torch, Ray or pydantic)."""
    parser = _Parser(prog="ferray")
    _predict_cli.add_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _predict_only_parser() if argv[:1] == ["predict"] else _build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except FerrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
