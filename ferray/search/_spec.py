"""The specs shipped with ferray (``ferray search`` with no file uses ``quickstart``).

The spec's schema and its loader live in :mod:`ferray.run.spec` (every stage reads a run's
spec); this module only finds the packaged spec files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ferray.errors import ConfigError, closest

__all__ = ["packaged_spec", "PACKAGED_SPECS"]

#: Specs shipped with ferray (``ferray search`` with no file uses ``quickstart``).
PACKAGED_SPECS = ("quickstart", "fer2013", "ferplus", "rafce_multitask", "affectnet")


def packaged_spec(name: str = "quickstart") -> Path:
    """The path of a spec shipped inside the package (works for non-editable installs)."""
    if name not in PACKAGED_SPECS:
        raise ConfigError(
            f"no packaged spec {name!r}{closest(name, PACKAGED_SPECS)}; packaged: {', '.join(PACKAGED_SPECS)}"
        )
    return Path(str(resources.files("ferray.search") / "specs" / f"{name}.yaml"))
