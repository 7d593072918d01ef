"""BatchAugment: the training augmentation on whole batches agrees with the albumentations pipeline.

Each statistic is measured over ``N`` augmented copies of one fixed image through both
paths (:class:`BatchAugment` and :func:`build_train_transform` image by image) and built so
that one augmentation drives it: the left/right order of a two-tone image (flip), the
median of a uniform gray image (brightness/contrast: affine, blur and dropout leave it
alone), its exactly black pixels (dropout), the centroid and area of a centred square
(affine), the gradient energy of a face (blur and noise). With N = 3000, a proportion's
standard error is at most 0.009, so the tolerances (about 4 standard errors of a
difference) fail when a probability or a range is off by a few tenths of its value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _fer_helpers import one_torch_thread  # noqa: F401 - autouse: one torch thread for these tests

from ferray.data import generate
from ferray.training import BatchAugment, apply_batch, build_eval_transform, build_train_transform
from ferray.training.resident import resident_images

N = 3000
SIZE = 48


def chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def both_paths(image: np.ndarray, strength: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``N`` augmented copies of ``image`` as ``float32 (N, C, SIZE, SIZE)``: batch path, albumentations path."""
    images = np.repeat(image[None], N, axis=0)
    aug = BatchAugment(SIZE, image.shape[2], strength)
    batch = aug(chw(images), torch.Generator().manual_seed(seed)).numpy()
    per_image = apply_batch(build_train_transform(SIZE, image.shape[2], strength, seed=seed), images)
    return batch, per_image


def gray_levels(x: np.ndarray) -> np.ndarray:
    return x * 127.5 + 127.5


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_flip_rate_is_one_half_as_with_albumentations(strength):
    image = np.full((SIZE, SIZE, 1), 64, np.uint8)
    image[:, SIZE // 2 :] = 192
    rates = []
    for out in both_paths(image, strength):
        left, right = out[:, 0, :, : SIZE // 2].mean((1, 2)), out[:, 0, :, SIZE // 2 :].mean((1, 2))
        rates.append(float(np.mean(left > right)))
    batch, per_image = rates
    assert abs(batch - 0.5) < 0.03 and abs(batch - per_image) < 0.04, rates


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_brightness_contrast_shift_distribution_matches(strength):
    # A uniform gray image: flip, affine (reflected border) and blur leave it as it is, so its
    # median is 128 * (1 + c) + 255 b when the step applies (p = 0.3 + 0.5 s), else 128.
    image = np.full((SIZE, SIZE, 1), 128, np.uint8)
    batch, per_image = (np.median(gray_levels(out).reshape(N, -1), axis=1) for out in both_paths(image, strength))
    unchanged = [float(np.mean(np.abs(m - 128) < 1.5)) for m in (batch, per_image)]
    assert abs(unchanged[0] - (1 - (0.3 + 0.5 * strength))) < 0.03, unchanged
    assert abs(unchanged[0] - unchanged[1]) < 0.04, unchanged
    q = [5, 25, 75, 95]
    assert np.allclose(np.percentile(batch, q), np.percentile(per_image, q), atol=4.0), (
        np.percentile(batch, q),
        np.percentile(per_image, q),
    )
    assert abs(batch.std() - per_image.std()) < 0.08 * per_image.std()


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_dropout_zeroes_the_same_share_of_pixels(strength):
    image = np.full((SIZE, SIZE, 1), 128, np.uint8)
    batch, per_image = both_paths(image, strength)
    zeroed = [float(np.mean(out == -1.0)) for out in (batch, per_image)]
    with_holes = [float(np.mean((out == -1.0).any(axis=(1, 2, 3)))) for out in (batch, per_image)]
    assert abs(zeroed[0] - zeroed[1]) < 0.15 * zeroed[1], zeroed
    assert abs(with_holes[0] - 0.5 * strength) < 0.03 and abs(with_holes[0] - with_holes[1]) < 0.04, with_holes


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_affine_moves_and_resizes_a_square_alike(strength):
    image = np.zeros((SIZE, SIZE, 1), np.uint8)
    image[16:32, 16:32] = 255
    ys, xs = np.mgrid[:SIZE, :SIZE]
    stats = []
    for out in both_paths(image, strength):
        x = out[:, 0]
        square = x > ((x.min((1, 2)) + x.max((1, 2))) / 2)[:, None, None]
        area = square.sum((1, 2))
        cx = (square * xs).sum((1, 2)) / np.maximum(area, 1)
        cy = (square * ys).sum((1, 2)) / np.maximum(area, 1)
        stats.append((cx.std(), cy.std(), float(np.mean(np.abs(cx - 23.5) > 0.5)), area.mean(), area.std()))
    (bx, by, bmoved, barea, bspread), (px, py, pmoved, parea, pspread) = stats
    assert abs(bx - px) < 0.1 * px and abs(by - py) < 0.1 * py, stats
    assert abs(bmoved - pmoved) < 0.04, stats
    assert abs(barea - parea) < 0.02 * parea and abs(bspread - pspread) < 0.1 * pspread, stats


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_blur_noise_and_overall_pixel_statistics_match_on_a_face(strength):
    face = generate(count=1, size=SIZE, seed=0).images[0]
    batch, per_image = both_paths(face, strength)
    assert abs(batch.mean() - per_image.mean()) < 0.02
    assert abs(batch.std() - per_image.std()) < 0.02
    # Blur lowers a face's gradient energy, noise raises it: both tails of its distribution.
    energy = [np.abs(np.diff(out, axis=3)).mean(axis=(1, 2, 3)) for out in (batch, per_image)]
    q = [2, 10, 50, 90, 98]
    lo, hi = np.percentile(energy[0], q), np.percentile(energy[1], q)
    assert np.allclose(lo, hi, rtol=0.12), (lo, hi)


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_range(channels, strength):
    rng = np.random.default_rng(0)
    aug = BatchAugment(32, channels, strength)
    for side in (32, 48):
        images = torch.from_numpy(rng.integers(0, 256, (8, channels, side, side), dtype=np.uint8))
        out = aug(images, torch.Generator().manual_seed(0))
        assert out.shape == (8, channels, 32, 32) and out.dtype == torch.float32
        assert out.min() >= -1.0 and out.max() <= 1.0


def test_same_seed_same_batch_and_another_seed_another():
    images = chw(np.random.default_rng(0).integers(0, 256, (16, SIZE, SIZE, 1), dtype=np.uint8))
    aug = BatchAugment(SIZE, 1, 1.0)
    a = aug(images, torch.Generator().manual_seed(7))
    b = aug(images, torch.Generator().manual_seed(7))
    c = aug(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("side", [48, 40, 64])
def test_strength_zero_is_exactly_the_eval_transform_of_the_resident_images(side):
    images = np.random.default_rng(1).integers(0, 256, (6, side, side, 3), dtype=np.uint8)
    for channels in (1, 3):
        resident = torch.from_numpy(resident_images(images, np.arange(6), SIZE, channels))
        out = BatchAugment(SIZE, channels, 0.0)(resident, torch.Generator())
        assert np.array_equal(out.numpy(), apply_batch(build_eval_transform(SIZE, channels), images))


def test_bad_inputs_are_refused_with_what_is_expected():
    aug = BatchAugment(SIZE, 1, 0.5)
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, 1, H, W\), got torch.float32"):
        aug(torch.zeros(2, 1, SIZE, SIZE), torch.Generator())
    with pytest.raises(ValueError, match=r"got torch.uint8 \(2, 3, 48, 48\)"):
        aug(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8), torch.Generator())
    with pytest.raises(ValueError, match="strength is 1.5"):
        BatchAugment(SIZE, 1, 1.5)
