"""``ferray.metrics`` and ``ferray.imaging`` need numpy and Pillow alone (``ferray predict`` uses them)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "timm", "sklearn", "scipy", "pyarrow", "pandas", "ferray.data", "ferray.training")


def test_importing_the_shared_modules_loads_nothing_heavy():
    code = (
        "import sys, ferray.metrics, ferray.imaging\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
