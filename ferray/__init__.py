"""ferray: distributed hyperparameter search over facial expression recognition models."""

import os as _os

# albumentations asks PyPI for a newer version at import; ferray never touches the network
# on its own, and the check costs seconds in every Ray worker.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
