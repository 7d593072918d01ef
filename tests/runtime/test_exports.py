"""``ferray.runtime`` exports every name it lists, and importing it (or the training config) loads no Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ferray.runtime


@pytest.mark.parametrize("name", ferray.runtime.__all__)
def test_every_listed_name_resolves(name):
    assert getattr(ferray.runtime, name) is not None


def test_importing_the_runtime_and_the_training_config_loads_no_ray_or_torch():
    code = (
        "import json, sys; import ferray.runtime, ferray.training.config; "
        "from ferray.runtime import plan_resources, NodeSpec; "
        "print(json.dumps(sorted(m for m in ('ray', 'torch') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
