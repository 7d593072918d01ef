"""ferray: distributed hyperparameter search over facial expression recognition models."""

__version__ = "0.1.0"
