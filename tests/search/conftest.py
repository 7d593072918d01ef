from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

BASE = """\
name: t
data: {source: "synthetic:basic7?count=70&size=48&seed=0"}
folds: {k: 2}
model: {backbone: test_resnet, pretrained: false}
budget: {trials: 4, max_epochs: 3, grace_period: 1, reduction_factor: 2}
"""


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec file: the BASE sections plus ``space`` (YAML text); returns its path."""

    def write(space: str, extra: str = "", base: str = BASE) -> Path:
        text = base + extra + "space:\n" + textwrap.indent(textwrap.dedent(space).strip("\n"), "  ") + "\n"
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        return path

    return write
