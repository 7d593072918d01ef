"""render_grid: a labelled PNG of a few images per class, for any dataset."""

import pytest
from PIL import Image

from ferray.data import generate, render_grid
from ferray.errors import DataError


def test_render_grid_writes_a_labelled_png(tmp_path):
    data = generate(count=28, size=48, seed=0)
    path = render_grid(data, tmp_path / "grid.png", per_class=3)
    with Image.open(path) as im:
        assert im.format == "PNG"
        width, height = im.size
    assert height >= 7 * 96 and width >= 3 * 96


def test_render_grid_draws_colour_images_at_the_tile_size(tmp_path):
    data = generate(taxonomy="basic8", count=16, size=64, channels=3, seed=1)
    path = render_grid(data, tmp_path / "sub" / "grid.png", per_class=2, tile=128)
    with Image.open(path) as im:
        assert im.mode == "RGB"
        assert im.size[1] == 8 * (128 + 4) + 4  # one row of 128-px tiles per class, 4-px gaps


@pytest.mark.parametrize("per_class", [0, -1, 2.5, True])
def test_render_grid_refuses_a_bad_per_class(tmp_path, per_class):
    data = generate(count=7, seed=0)
    with pytest.raises(DataError, match=rf"per_class={per_class!r} must be an integer >= 1"):
        render_grid(data, tmp_path / "x.png", per_class=per_class)


def test_render_grid_refuses_empty_data(tmp_path):
    data = generate(count=7, seed=0)
    with pytest.raises(DataError, match="no images to draw"):
        render_grid(data.subset([]), tmp_path / "x.png")
