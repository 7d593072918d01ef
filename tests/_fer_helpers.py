"""Helpers shared by tests in several folders (``tests/`` is on ``sys.path`` through its conftest).

* :func:`one_torch_thread`: import it into a folder's ``conftest.py`` to run that folder's
  tests on one torch intra-op thread (an autouse session fixture).
* :func:`parse_cli`: a command's parser as ``ferray``'s CLI wires it, for tests of a ``_cli`` module.
"""

from __future__ import annotations

import argparse
from types import ModuleType

import numpy as np
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


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sampled(n: int, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) and the probabilities softmax(scale * z): calibrated when scale == 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 5))
    true = softmax(z)
    y = (true.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return y, softmax(scale * z)
