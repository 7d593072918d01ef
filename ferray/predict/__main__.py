"""``python -m ferray.predict BUNDLE INPUT ...``: ``ferray predict`` without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ferray.errors import FerrayError
from ferray.predict._cli import DESCRIPTION, add_arguments


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferray.predict", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FerrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
