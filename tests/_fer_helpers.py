"""Helpers shared by tests in several folders (``tests/`` is on ``sys.path`` through its conftest).

* :func:`one_torch_thread`: import it into a folder's ``conftest.py`` to run that folder's
  tests on one torch intra-op thread (an autouse session fixture).
* :func:`parse_cli`: a command's parser as ``ferray``'s CLI wires it, for tests of a ``_cli`` module.
"""

from __future__ import annotations

import argparse
from types import ModuleType

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: the CI machine's cores are shared, and oversubscribed threads are 20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def parse_cli(cli: ModuleType, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the parser ``cli.add_commands`` adds; checks the command has its handler."""
    from ferray.cli import command_table

    parser = argparse.ArgumentParser(prog="ferray")
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert command_table(parser)[args.command] is args.func
    return args
