"""One decoder for datasets and predict: mode conversions, luma, resize, errors, many files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ferray.errors import DataError
from ferray.imaging import (
    IMAGE_EXTENSIONS,
    decode_image,
    decode_many,
    from_array,
    is_gray,
    open_image,
    probe_images,
    resize,
    resize_array,
)


def _png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_gray_same_size_is_exact():
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = decode_image(_png(Image.fromarray(arr, "L")), size=8, channels=1)
    assert out.shape == (8, 8, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], arr)


def test_gray_to_three_channels_repeats():
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = decode_image(_png(Image.fromarray(arr, "L")), size=8, channels=3)
    assert out.shape == (8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], arr)


def test_rgb_to_one_channel_uses_luma():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200  # pure green -> 0.587 * 200
    out = decode_image(_png(Image.fromarray(rgb, "RGB")), size=4, channels=1)
    assert abs(int(out[0, 0, 0]) - round(0.587 * 200)) <= 1


def test_palette_decodes_to_its_colours():
    im = Image.new("P", (4, 4))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((0, 0), 1)
    out = decode_image(_png(im), size=4, channels=3)
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[1, 1]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_black(mode):
    n = 4 if mode == "RGBA" else 2
    arr = np.full((2, 2, n), 200, np.uint8)
    arr[..., -1] = 0
    arr[0, 0, -1] = 255
    out = decode_image(_png(Image.fromarray(arr, mode)), size=2, channels=1)
    assert out[0, 0, 0] == 200 and out[1, 1, 0] == 0


def test_sixteen_bit_scales_to_eight():
    arr = np.array([[0, 65535], [257 * 100, 257 * 200]], np.uint16)
    im = Image.fromarray(arr)
    assert im.mode.startswith("I;16")
    out = decode_image(_png(im), size=2, channels=1)
    np.testing.assert_array_equal(out[:, :, 0], [[0, 255], [100, 200]])


def test_cmyk_jpeg_decodes_to_rgb():
    im = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red
    out = decode_image(_png(im, "JPEG"), size=8, channels=3)
    assert out[4, 4, 0] > 200 and out[4, 4, 1] < 60


def test_resize_and_non_square():
    im = Image.fromarray(np.full((10, 20), 77, np.uint8), "L")
    out = decode_image(_png(im), size=6, channels=1)
    assert out.shape == (6, 6, 1) and np.all(out == 77)


def test_truncated_file_names_the_path(tmp_path):
    path = tmp_path / "face.jpg"
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8), "L"), "JPEG")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"face\.jpg: unreadable image"):
        decode_image(path, size=8, channels=1)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.png: unreadable image"):
        decode_image(path)


@pytest.mark.parametrize(
    "kwargs, match", [({"channels": 2}, "channels is 2, but must be 1 or 3"), ({"size": 0}, "size is 0")]
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        decode_image(b"", **kwargs)


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_many_collects_failures(tmp_path, workers):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (5, 5), np.uint8), "L").save(p)
        paths.append(p)
    paths[3].write_bytes(b"junk")
    res = decode_many(paths, 5, 1, workers=workers)
    assert res.images.shape == (6, 5, 5, 1)
    assert res.ok.tolist() == [True, True, True, False, True, True]
    assert res.failures[0][0] == 3 and "3.png" in res.failures[0][1]
    assert res.sizes == {"5x5": 5} and res.modes == {"L": 5}


def test_resize_array_noop_and_convert():
    imgs = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 1), np.uint8)
    assert resize_array(imgs, 4, 1) is imgs
    out = resize_array(imgs, 8, 3)
    assert out.shape == (3, 8, 8, 3)


def _photo(rng, h, w, mode):
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    if mode == "RGB":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert("P")
    return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))  # I;16


@pytest.mark.parametrize(
    "name, h, w, mode",
    [
        ("a.png", 48, 48, "L"),
        ("b.jpg", 120, 90, "RGB"),
        ("c.png", 64, 64, "RGBA"),
        ("d.bmp", 30, 30, "P"),
        ("e.tif", 50, 40, "I;16"),
        ("f.jpg", 400, 300, "RGB"),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_open_then_resize_is_decode_image(tmp_path, name, h, w, mode, channels):
    """Predict's steps (open, maybe crop, resize) give decode_image's pixels: a large JPEG too (draft scale)."""
    path = tmp_path / name
    _photo(np.random.default_rng(0), h, w, mode).save(path)
    assert path.suffix in IMAGE_EXTENSIONS
    ours = resize(open_image(path, channels, 48), 48)
    np.testing.assert_array_equal(ours, decode_image(path, size=48, channels=channels))


def test_unidentified_format_says_so(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"notes\.jpg: unreadable image"):
        open_image(path, 3)
    with pytest.raises(DataError, match=r"missing\.png: cannot open image"):
        open_image(tmp_path / "missing.png", 3)


@pytest.mark.parametrize("shape", [(6, 6), (6, 6, 1), (6, 6, 3)])
@pytest.mark.parametrize("channels", [1, 3])
def test_from_array_shapes(shape, channels):
    im = from_array(np.full(shape, 90, np.uint8), channels)
    assert im.mode == ("L" if channels == 1 else "RGB") and im.size == (6, 6)


def test_from_array_refuses_other_dtypes_and_shapes():
    with pytest.raises(DataError, match=r"x: images must be uint8, got float32"):
        from_array(np.zeros((4, 4), np.float32), 1, "x")
    with pytest.raises(DataError, match=r"image shape \(4, 4, 2\)"):
        from_array(np.zeros((4, 4, 2), np.uint8), 1)


def test_resize_keeps_the_size_without_one():
    im = Image.fromarray(np.zeros((5, 7), np.uint8), "L")
    assert resize(im, None).shape == (5, 7, 1) and resize(im, 3).shape == (3, 3, 1)


def test_probe_guesses_side_and_gray(tmp_path):
    Image.new("L", (40, 40)).save(tmp_path / "a.png")
    Image.new("L", (40, 30)).save(tmp_path / "b.png")
    Image.new("RGB", (64, 64), (10, 200, 10)).save(tmp_path / "c.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    paths = sorted(tmp_path.iterdir())
    assert probe_images(paths) == (40, False)
    assert probe_images(paths[:2]) == (40, True)
    assert probe_images([]) == (None, True)
    gray_palette = Image.new("L", (4, 4)).convert("P")
    assert is_gray(gray_palette)
