"""The error every ``ferray.cluster`` function raises for a cluster, job or storage it cannot use."""

from __future__ import annotations

from ferray.errors import FerrayError

__all__ = ["ClusterError"]


class ClusterError(FerrayError):
    """A Ray cluster, job or storage location cannot be used as given (the message says why and what to do)."""
