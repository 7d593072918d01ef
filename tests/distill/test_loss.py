"""The distillation loss and temperature softening, without Ray."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ferray.distill import DistillationLoss, distillation_loss, soften


def _batch(seed=0, b=6, c=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g) * 2
    teacher = torch.softmax(torch.randn(b, c, generator=g), dim=-1)
    hard = torch.eye(c)[torch.randint(0, c, (b,), generator=g)]
    return logits, teacher, hard


def test_alpha_one_ignores_the_hard_labels():
    logits, teacher, hard = _batch()
    a = distillation_loss(logits, teacher, hard, alpha=1.0, temperature=3.0)
    b = distillation_loss(logits, teacher, hard.roll(1, dims=1), alpha=1.0, temperature=3.0)
    assert float(a) == pytest.approx(float(b))


def test_alpha_zero_is_cross_entropy_and_ignores_the_teacher():
    logits, teacher, hard = _batch()
    loss = distillation_loss(logits, teacher, hard, alpha=0.0, temperature=3.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, hard.argmax(1))), rel=1e-6)
    other = distillation_loss(logits, teacher.roll(1, dims=1), hard, alpha=0.0, temperature=3.0)
    assert float(other) == pytest.approx(float(loss))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_soft_term_is_t_squared_kl_at_temperature(temperature):
    logits, teacher, hard = _batch(1)
    loss = distillation_loss(logits, teacher, hard, alpha=1.0, temperature=temperature)
    kl = F.kl_div(F.log_softmax(logits / temperature, dim=-1), teacher, reduction="batchmean")
    assert float(loss) == pytest.approx(temperature**2 * float(kl), rel=1e-5)


def test_mixed_weights_and_zero_loss_when_student_matches_teacher():
    logits, teacher, hard = _batch(2)
    t = 2.0
    mixed = distillation_loss(logits, teacher, hard, alpha=0.3, temperature=t)
    soft = distillation_loss(logits, teacher, hard, alpha=1.0, temperature=t)
    ce = distillation_loss(logits, teacher, hard, alpha=0.0, temperature=t)
    assert float(mixed) == pytest.approx(0.3 * float(soft) + 0.7 * float(ce), rel=1e-5)
    matching = torch.softmax(logits / t, dim=-1)
    assert float(distillation_loss(logits, matching, hard, alpha=1.0, temperature=t)) == pytest.approx(0.0, abs=1e-5)


def test_rows_without_a_hard_label_are_left_out_of_the_hard_term():
    logits, teacher, hard = _batch(3)
    unlabelled = torch.cat([hard[:3], torch.zeros(3, hard.shape[1])])
    loss = distillation_loss(logits, teacher, unlabelled, alpha=0.0, temperature=1.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits[:3], hard[:3].argmax(1))), rel=1e-6)


def test_soft_term_gradients_keep_their_scale_across_temperatures():
    # The T^2 factor: gradient norms stay within a small factor for T from 2 to 8.
    logits, teacher, hard = _batch(4)
    norms = []
    for t in (2.0, 8.0):
        x = logits.clone().requires_grad_(True)
        distillation_loss(x, soften(teacher, 1.0), hard, alpha=1.0, temperature=t).backward()
        norms.append(float(x.grad.norm()))
    assert 0.2 < norms[1] / norms[0] < 5


def test_soften_identity_sharpen_and_flatten():
    p = np.array([[0.7, 0.2, 0.1]], np.float32)
    np.testing.assert_allclose(soften(p, 1.0), p, rtol=1e-5)
    hot, cold = soften(p, 4.0), soften(p, 0.25)
    assert hot.max() < 0.7 < cold.max()
    np.testing.assert_allclose(hot.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(soften(p, 1e3), np.full((1, 3), 1 / 3), atol=1e-3)
    # p^(1/T) renormalised == softmax(log p / T), numpy and torch agree
    torch.testing.assert_close(soften(torch.from_numpy(p), 4.0), torch.from_numpy(hot), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hot, (p**0.25) / (p**0.25).sum(), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"alpha": 1.5, "temperature": 1.0}, "alpha is 1.5"), ({"alpha": 0.5, "temperature": 0.0}, "temperature is 0.0")],
)
def test_bad_weights_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillationLoss(**kwargs)


def test_packed_targets_must_be_twice_the_classes():
    logits, teacher, hard = _batch()
    loss = DistillationLoss(alpha=0.5, temperature=2.0)
    packed = torch.cat([teacher, hard], dim=1)
    assert float(loss(logits, packed)) == pytest.approx(
        float(distillation_loss(logits, teacher, hard, alpha=0.5, temperature=2.0))
    )
    with pytest.raises(ValueError, match=r"\(B, 10\) = \[teacher \| hard\]"):
        loss(logits, teacher)
