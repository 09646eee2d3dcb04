"""A run's settings as flat `name -> text` pairs, the form trackers (MLflow params) and the report's table take."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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


def compile_config(optimizers: Mapping[str, Any], losses: Sequence[Any], loss_weights: Sequence[float],
                   step_options: Mapping[str, Any]) -> dict[str, Any]:
    """What `compile` chose, as plain values: each named optimizer's class and current hyperparameters (first
    group; `optimizer` for the only one), each output's loss name (none when the model computes its own),
    the loss weights, then the step options."""
    names = [getattr(loss, "name", type(loss).__name__) for loss in losses]
    return {
        **{name: _optimizer_config(optimizer) for name, optimizer in optimizers.items()},
        "loss": names if len(names) != 1 else names[0],
        "loss_weights": list(loss_weights) if len(loss_weights) > 1 else loss_weights[0],
        **step_options,
    }


def _optimizer_config(optimizer: Any) -> dict[str, Any]:
    groups = getattr(optimizer, "param_groups", None) or [{}]
    hyper = {key: value for key, value in groups[0].items()
             if key != "params" and isinstance(value, (bool, int, float, str, tuple, type(None)))}
    return {"name": type(optimizer).__name__, **hyper}
