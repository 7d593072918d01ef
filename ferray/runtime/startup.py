"""Ray start-up: connect to a running cluster, or start a local Ray, as every ferray stage does.

:func:`ensure_ray` is the one place a ferray driver (``ferray train``, ``ferray search``,
``ferray distill``, the benchmarks) calls ``ray.init``: no dashboard, Ray's own log lines at
WARNING, the environment a local Ray's workers inherit (:func:`ferray.runtime.compat.local_ray_environment`),
and an address where nothing listens refused within seconds instead of Ray's minutes.
:func:`use_train_environment` sets what Ray Train reads where a run is fit
(:func:`ferray.runtime.compat.train_environment`): here, and in each sweep trial's process.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ferray.errors import FerrayError

__all__ = ["ensure_ray", "use_train_environment"]


def ensure_ray(
    address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, log_to_driver: bool = True
) -> dict:
    """Connect to Ray at ``address`` or start a local instance; return the cluster's resources.

    ``log_to_driver=False`` leaves workers' output in Ray's session folder instead of
    echoing it here.
    """
    import ray

    use_train_environment()  # before a local Ray starts: its workers inherit it
    if not ray.is_initialized():
        # No dashboard: nothing here uses the state API (see compat.trainer_without_pg_cleaner),
        # and it costs seconds of start-up and a few hundred MB.
        kwargs: dict[str, Any] = {
            "configure_logging": True,
            "logging_level": "WARNING",
            "log_to_driver": log_to_driver,
            "include_dashboard": False,
        }
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            _check_listening(address)
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise FerrayError(
                    f"cannot connect to the Ray cluster at {address} ({exc}); is it running there, and, as Ray 2.60 "
                    "clusters require a token, is it in RAY_AUTH_TOKEN (or ~/.ray/auth_token, or the file named by "
                    "RAY_AUTH_TOKEN_PATH)?"
                ) from None
        else:
            from ferray.runtime.compat import local_ray_environment

            for key, value in local_ray_environment().items():  # inherited by Ray's workers
                os.environ.setdefault(key, value)
            # address="local": a new Ray of its own, never one that `ray start` left on this machine
            # (Ray's default would attach to it); --address / RAY_ADDRESS name a cluster to join.
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    return ray.cluster_resources()


def use_train_environment() -> dict[str, str]:
    """Set Ray Train's environment for the runs this process fits; a variable already set (by the user) is kept.

    Returns what the process's environment now holds for those variables.
    """
    from ferray.runtime.compat import train_environment

    return {key: os.environ.setdefault(key, value) for key, value in train_environment().items()}


def _check_listening(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds when nothing listens at a ``HOST:PORT`` Ray address (Ray itself waits minutes)."""

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", ray://..., or another form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else (str(exc) or type(exc).__name__)
        raise FerrayError(
            f"no Ray cluster answers at {address} ({why}); is the head running? --address takes the "
            "head's GCS address, HOST:6379 by default (the job server's http://HOST:8265 is for "
            "`ferray submit`)"
        ) from None
