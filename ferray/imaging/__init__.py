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

__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_image",
    "open_image",
    "from_array",
    "to_channels",
    "resize",
    "is_gray",
    "DecodeResult",
    "decode_many",
    "probe_images",
    "resize_array",
]
