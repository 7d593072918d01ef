"""The fold workers' process group (ferray.training._backend), without Ray: two processes join it and exchange."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ferray.training import _backend
from ferray.training._backend import GlooConfig, process_group_config

#: One fold worker's side: join the group at the URL rank 0 named, gather every rank's object, leave.
MEMBER = (
    "import json, sys, torch.distributed as dist; from ferray.training._backend import _join, _leave; "
    "url, rank = sys.argv[1], int(sys.argv[2]); _join(url, rank, 2, 120); "
    "out = [None, None]; dist.all_gather_object(out, {'rank': rank}); _leave(); "
    "print(json.dumps({'gathered': out, 'left': not dist.is_initialized()}))"
)


def test_two_processes_join_one_gloo_group_at_the_address_rank_0_names():
    host, port = _backend._free_address()
    url = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    members = [
        subprocess.Popen([sys.executable, "-c", MEMBER, url, str(rank)], stdout=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    outs = [json.loads(m.communicate(timeout=240)[0].strip().splitlines()[-1]) for m in members]
    assert [m.returncode for m in members] == [0, 0]
    assert outs == [{"gathered": [{"rank": 0}, {"rank": 1}], "left": True}] * 2


def test_workers_share_their_gpus_as_with_rays_torch_backend_and_the_bound_is_configurable():
    config = GlooConfig(timeout_s=60)
    assert config.backend_cls.share_cuda_visible_devices is True and config.timeout_s == 60


@pytest.mark.parametrize("interface, expected", [(True, "GlooConfig"), (False, "TorchConfig")])
def test_without_rays_backend_interface_the_trainer_falls_back_to_torch_config(monkeypatch, interface, expected):
    from ferray.runtime import compat

    monkeypatch.setattr(compat, "available", lambda name: interface if name == "train-backend-worker-group" else True)
    config = process_group_config()
    assert type(config).__name__ == expected and getattr(config, "backend", "gloo") == "gloo"
