"""The fold workers' process group, set up without torch in the processes that never train.

Ray Train's ``TorchConfig`` lives in ``ray.train.torch``, which imports torch when it is
imported. A trainer built with it loads torch in the process that builds it (a sweep's
trial function) and again in the Train controller that unpickles it: two imports of seconds
each, one after the other on every trial's start-up, in processes that never hold a tensor.
:class:`GlooConfig` does what ``TorchConfig(backend="gloo", init_method="tcp")`` does,
through Ray Train's backend interface (``ray.train.backend``): rank 0 names a free port, every
worker joins a gloo process group there, and each worker leaves it when the group shuts
down. torch is imported only inside the functions the workers run.

The folds train independent models; their one collective is the per-epoch exchange of
metrics and predictions (small pickled objects on CPU), so gloo serves GPU workers too.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta

import ray
from ray.exceptions import GetTimeoutError
from ray.train.backend import Backend, BackendConfig

__all__ = ["GlooConfig", "process_group_config"]

#: Seconds a worker group may take to leave its process group before Train shuts it down anyway.
LEAVE_TIMEOUT_S = 30.0


@dataclass
class GlooConfig(BackendConfig):
    """A gloo process group over a trial's fold workers; ``timeout_s`` bounds joining it and every collective."""

    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return _GlooBackend

    @property
    def train_func_context(self):
        return _CudaDevice


class _CudaDevice:
    """Around the training function: a worker given a GPU makes it torch's current CUDA device (as TorchConfig)."""

    def __enter__(self):
        import torch

        if torch.cuda.is_available():
            import ray.train.torch

            device = ray.train.torch.get_device()
            if device.type == "cuda":
                torch.cuda.set_device(device)

    def __exit__(self, *exc) -> bool:
        return False


class _GlooBackend(Backend):
    # As Ray's torch backend: workers on one node see each other's GPUs and pick theirs by local rank.
    share_cuda_visible_devices: bool = True

    def on_start(self, worker_group, backend_config: GlooConfig) -> None:
        size = len(worker_group)
        if size == 1:
            return  # one fold worker: nothing to exchange (``_gather`` needs no group)
        host, port = ray.get(worker_group.execute_single_async(0, _free_address), timeout=backend_config.timeout_s)
        url = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
        # Positional arguments: the worker group's own parameters are named ``rank`` / ``worker_index``.
        joins = [
            worker_group.execute_single_async(rank, _join, url, rank, size, backend_config.timeout_s)
            for rank in range(size)
        ]
        try:
            ray.get(joins, timeout=backend_config.timeout_s)
        except GetTimeoutError:
            raise TimeoutError(
                f"the {size} fold workers did not join their process group at {url} within {backend_config.timeout_s} s"
            ) from None

    def on_shutdown(self, worker_group, backend_config: GlooConfig) -> None:
        if len(worker_group) == 1:
            return
        try:
            ray.get(worker_group.execute_async(_leave), timeout=LEAVE_TIMEOUT_S)
        except GetTimeoutError:
            pass  # Train kills the workers next; a group that did not close goes with them


def _free_address() -> tuple[str, int]:
    """On rank 0: this node's address and a port free on it now."""
    host = ray.util.get_node_ip_address()
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return host, s.getsockname()[1]


def _join(url: str, world_rank: int, world_size: int, timeout_s: float) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=url, rank=world_rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
    )


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def process_group_config() -> BackendConfig:
    """The fold workers' backend: :class:`GlooConfig`, or Ray's ``TorchConfig`` where Ray moved the backend
    interface (``ferray.runtime.compat``, entry ``train-backend-worker-group``)."""
    from ferray.runtime.compat import available

    if available("train-backend-worker-group"):
        return GlooConfig()
    from ray.train.torch import TorchConfig

    return TorchConfig(backend="gloo")
