"""epochal: Keras/TF.js-style `compile` / `fit` / `evaluate` / `predict` for PyTorch modules."""

from epochal import callbacks, losses, metrics, schedules, tune
from epochal.callbacks.history import History
from epochal.model import Model

__version__ = "0.1.0"

__all__ = ["History", "Model", "callbacks", "losses", "metrics", "schedules", "tune", "__version__"]
