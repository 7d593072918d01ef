from __future__ import annotations

import pytest
import torch

from ferray.training import MixupCutmix, cutmix, mixup


def _batch(n: int = 6, k: int = 4):
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 16, 16).clone()
    y = torch.eye(k)[torch.arange(n) % k]
    return x, y


def test_mixup_blends_images_and_targets() -> None:
    x, y = _batch()
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    xm, ym = mixup(x, y, 0.7, perm)
    assert torch.allclose(xm[0], 0.7 * x[0] + 0.3 * x[1])
    assert torch.allclose(ym.sum(1), torch.ones(6))
    assert torch.equal(x, _batch()[0])  # inputs untouched


def test_cutmix_lambda_equals_kept_area() -> None:
    x, y = _batch()
    perm = torch.roll(torch.arange(6), 1)
    g = torch.Generator().manual_seed(3)
    xm, ym, lam = cutmix(x, y, 0.6, perm, generator=g)
    for i in range(6):
        kept = (xm[i] == x[i]).float().mean().item()
        assert kept == pytest.approx(lam)
        assert torch.allclose(ym[i], lam * y[i] + (1 - lam) * y[perm[i]])


def test_cutmix_box_clipped_at_border_corrects_lambda() -> None:
    x, y = _batch()
    _, _, lam = cutmix(x, y, 0.5, torch.roll(torch.arange(6), 1), box=(0, 4, 0, 16))
    assert lam == pytest.approx(1 - 4 * 16 / 256)


@pytest.mark.parametrize(("mixup_alpha", "cutmix_alpha"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixer_keeps_distributions_and_is_deterministic(mixup_alpha: float, cutmix_alpha: float) -> None:
    def run(seed: int):
        mix = MixupCutmix(4, mixup_alpha, cutmix_alpha, generator=torch.Generator().manual_seed(seed))
        outs = []
        for _ in range(5):
            x, y = _batch()
            aus = (torch.arange(6 * 18).reshape(6, 18) % 3 == 0).float()
            outs.append(mix(x, y, aus))
        return outs

    a, b, c = run(0), run(0), run(1)
    for (xa, ya, ua), (xb, yb, ub) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ua, ub)
        assert torch.allclose(ya.sum(1), torch.ones(6))
        assert ((ua >= 0) & (ua <= 1)).all()
    assert any(not torch.equal(xa, xc) for (xa, _, _), (xc, _, _) in zip(a, c))


def test_mixer_does_not_touch_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    MixupCutmix(4, 0.4, 1.0, generator=torch.Generator().manual_seed(0))(*_batch())
    assert torch.equal(before, torch.get_rng_state())


def test_warmup_ramps_probability() -> None:
    mix = MixupCutmix(4, mixup_alpha=0.4, prob=0.8, warmup_epochs=4)
    assert [mix.probability(e) for e in (0, 1, 2, 4, 10)] == pytest.approx([0.0, 0.2, 0.4, 0.8, 0.8])
    x, y = _batch()
    xo, yo, _ = mix(x, y, epoch=0)
    assert xo is x and yo is y and mix.last_perm is None


def test_au_max_mode_and_mask() -> None:
    x, y = _batch(2)
    aus = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mix = MixupCutmix(4, mixup_alpha=1.0, generator=torch.Generator().manual_seed(0), au_mode="max")
    while True:  # a permutation of 2 can be the identity; retry until the rows are swapped
        _, _, mixed = mix(x, y, aus)
        if mix.last_perm[0] == 1:
            break
    assert torch.equal(mixed, torch.ones(2, 2))
    assert mix.mix_mask(torch.tensor([True, False])).tolist() == [False, False]
