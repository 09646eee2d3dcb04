"""A run's settings as flat `name -> text` pairs, the form trackers (MLflow params) and the report's table take."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def flat_params(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings joined with dots (`optimizer.lr`), every value as text (lists as JSON).

    Example:
        >>> flat_params({"epochs": 3, "optimizer": {"name": "Adam", "lr": 0.001}, "metrics": ["loss"]})
        {'epochs': '3', 'optimizer.name': 'Adam', 'optimizer.lr': '0.001', 'metrics': '["loss"]'}
    """
    flat: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value), default=str)
        else:
            flat[name] = str(value)
    return flat
