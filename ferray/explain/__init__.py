"""What a FER model looks at: class activation maps and integrated gradients.

* :class:`CAMExplainer`: pytorch-grad-cam's GradCAM, GradCAM++, ScoreCAM, EigenCAM,
  LayerCAM and HiResCAM on a :class:`~ferray.training.FERModel`, with the target layer of its
  backbone family (:data:`FAMILIES`: ResNet, ConvNeXt, EfficientNet, MobileNetV3, ViT, Swin);
* :func:`integrated_gradients`: captum's integrated gradients on the input pixels, for any model;
* :func:`explain`: overlay PNGs, a grid and ``explain.json`` for images, with a bundle's or a
  run's models; an ensemble's map is the ensemble-weighted mean of its members' maps.

>>> from ferray.explain import explain
>>> result = explain("runs/exp1/bundle", "faces/", method="gradcam")  # doctest: +SKIP
>>> result.images[0].map.shape                                       # doctest: +SKIP
(48, 48)
"""

# Exports load on first use: `ferray --help` imports this package's CLI module and must not
# pay for torch, timm or pytorch-grad-cam.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "CAMExplainer": "ferray.explain._cam",
    "CAM_METHODS": "ferray.explain._cam",
    "METHODS": "ferray.explain._cam",
    "integrated_gradients": "ferray.explain._cam",
    "ig_map": "ferray.explain._cam",
    "FAMILIES": "ferray.explain._families",
    "Family": "ferray.explain._families",
    "register_family": "ferray.explain._families",
    "family_of": "ferray.explain._families",
    "choose_target_layer": "ferray.explain._families",
    "explain": "ferray.explain._explain",
    "Explanation": "ferray.explain._explain",
    "ExplainedImage": "ferray.explain._explain",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.explain._cam import CAM_METHODS, METHODS, CAMExplainer, ig_map, integrated_gradients
    from ferray.explain._explain import ExplainedImage, Explanation, explain
    from ferray.explain._families import FAMILIES, Family, choose_target_layer, family_of, register_family
