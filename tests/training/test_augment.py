from __future__ import annotations

import numpy as np
import pytest

from ferray.training import apply_batch, build_eval_transform, build_train_transform


def _images(n: int, side: int, channels: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, side, side, channels), dtype=np.uint8)


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("channels", [1, 3])
def test_train_transform_shape_dtype_range(channels: int, strength: float) -> None:
    tf = build_train_transform(32, channels, strength, seed=0)
    for side in (32, 48):
        out = apply_batch(tf, _images(8, side, channels))
        assert out.shape == (8, channels, 32, 32) and out.dtype == np.float32
        assert out.min() >= -1.0 and out.max() <= 1.0


def test_strength_zero_is_deterministic_and_equals_eval() -> None:
    images = _images(4, 40, 3)
    a = apply_batch(build_train_transform(32, 3, 0.0, seed=0), images)
    b = apply_batch(build_train_transform(32, 3, 0.0, seed=1), images)
    assert np.array_equal(a, b)
    assert np.array_equal(a, apply_batch(build_eval_transform(32, 3), images))


def test_same_seed_same_augmentations() -> None:
    images = _images(6, 32, 1)
    a = apply_batch(build_train_transform(32, 1, 1.0, seed=7), images)
    b = apply_batch(build_train_transform(32, 1, 1.0, seed=7), images)
    c = apply_batch(build_train_transform(32, 1, 1.0, seed=8), images)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_eval_normalisation_maps_0_255_to_minus1_1() -> None:
    tf = build_eval_transform(2, 1)
    out = tf(np.array([[0, 255], [255, 0]], np.uint8)[:, :, None])
    assert out.tolist() == [[[-1.0, 1.0], [1.0, -1.0]]]


def test_channel_conversion() -> None:
    gray = build_eval_transform(16, 1)(_images(1, 16, 3)[0])
    rgb = build_eval_transform(16, 3)(_images(1, 16, 1)[0])
    assert gray.shape == (1, 16, 16) and rgb.shape == (3, 16, 16)
    assert np.array_equal(rgb[0], rgb[2])


def test_rejects_bad_strength() -> None:
    with pytest.raises(ValueError, match="strength is 2"):
        build_train_transform(32, 1, 2.0, seed=0)
