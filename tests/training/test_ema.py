from __future__ import annotations

import torch

from ferray.training import ModelEma


def test_ema_moves_towards_weights_and_round_trips() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(net, decay=0.5, warmup=False)
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.module[0].weight, start + 0.5)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    other = ModelEma(net, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    assert torch.equal(other.module[0].weight, ema.module[0].weight)


def test_ema_warmup_decay() -> None:
    ema = ModelEma(torch.nn.Linear(2, 2), decay=0.999)
    assert ema.current_decay() == 0.1
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.999
