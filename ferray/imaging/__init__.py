"""Image files to ``uint8`` pixels, with Pillow and numpy only: one decoder for data and predict.

Datasets are built (:mod:`ferray.data`) and bundles predict (:mod:`ferray.predict`) through
these functions, so a photo given to ``ferray predict`` becomes the pixels a training image
of the same file became: the same mode conversions, ITU-R 601-2 luma, JPEG draft scale and
bilinear resize.

* :func:`decode_image`: one file or its bytes to ``(size, size, channels)``;
  :func:`open_image`, :func:`from_array`, :func:`resize`: the same steps apart, for callers
  that crop in between (faces);
* :func:`decode_many`: many files into one array, in worker processes, failures collected;
  :func:`probe_images`, :func:`resize_array`.

>>> import io
>>> from PIL import Image
>>> from ferray.imaging import decode_image
>>> buf = io.BytesIO(); Image.new("L", (48, 40), 128).save(buf, "PNG")
>>> decode_image(buf.getvalue(), size=32, channels=3).shape
(32, 32, 3)
"""

from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "IMAGE_EXTENSIONS": "ferray.imaging._decode",
    "decode_image": "ferray.imaging._decode",
    "open_image": "ferray.imaging._decode",
    "from_array": "ferray.imaging._decode",
    "to_channels": "ferray.imaging._decode",
    "resize": "ferray.imaging._decode",
    "is_gray": "ferray.imaging._decode",
    "DecodeResult": "ferray.imaging._batch",
    "decode_many": "ferray.imaging._batch",
    "probe_images": "ferray.imaging._batch",
    "resize_array": "ferray.imaging._batch",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.imaging._batch import DecodeResult, decode_many, probe_images, resize_array
    from ferray.imaging._decode import (
        IMAGE_EXTENSIONS,
        decode_image,
        from_array,
        is_gray,
        open_image,
        resize,
        to_channels,
    )
