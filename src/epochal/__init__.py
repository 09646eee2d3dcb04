"""epochal: Keras/TF.js-style `compile` / `fit` / `evaluate` / `predict` for PyTorch modules."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["History", "Model", "callbacks", "losses", "metrics", "optimizers", "predictions", "schedules", "tune",
           "__version__"]

# The public names load on first use (PEP 562), so what needs only a light submodule — `epochal --help`
# above all — does not pay for importing torch.
_LAZY = {"History": ("epochal.callbacks.history", "History"), "Model": ("epochal.model", "Model"),
         "callbacks": ("epochal.callbacks", None), "losses": ("epochal.losses", None),
         "metrics": ("epochal.metrics", None), "optimizers": ("epochal.optimizers", None),
         "predictions": ("epochal.predictions", None),
         "schedules": ("epochal.schedules", None), "tune": ("epochal.tune", None)}

if TYPE_CHECKING:
    from epochal import callbacks, losses, metrics, optimizers, predictions, schedules, tune
    from epochal.callbacks.history import History
    from epochal.model import Model


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'epochal' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
