"""The model of a command-line run: the built-in MLP or the user's `package.module:factory`, compiled."""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from epochal.cli.config import TrainConfig
from epochal.cli.data import Data
from epochal.cli.errors import CliError
from epochal.losses import get as get_loss
from epochal.model import Model


def mlp(inputs: int, outputs: int, hidden: list[int], dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout for each hidden width, then a linear layer giving logits (or values)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named by `package.module:factory` (the current folder is importable)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(f"--model must be 'mlp' or 'package.module:factory'. Received: {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does, so a factory beside the data is found
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError as error:
        raise CliError(f"Cannot import {module_name!r} for --model: {error}. Run from the folder holding it.") from None
    except AttributeError:
        raise CliError(f"{module_name!r} has no {attribute!r} for --model {spec}.") from None
    return factory


def build_module(config: TrainConfig, data: Data) -> nn.Module:
    """The network: `factory(inputs=..., outputs=...)` for a user's model, else the MLP.

    For regression the MLP's output bias starts at the mean target, so training begins at the
    right scale instead of spending epochs reaching it.
    """
    inputs = data.x_train.shape[1]
    if config.model != "mlp":
        module = load_factory(config.model)(inputs=inputs, outputs=data.outputs)
        if not isinstance(module, nn.Module):
            raise CliError(f"--model {config.model} must return a torch.nn.Module. Received: {type(module).__name__}")
        return module
    module = mlp(inputs, data.outputs, config.hidden, config.dropout)
    if data.classes is None:
        output = cast(nn.Linear, module[-1])
        with torch.no_grad():
            output.bias.fill_(float(data.y_train.mean()))
    return module


def build_model(config: TrainConfig, data: Data) -> Model:
    """A compiled `epochal.Model`: seeded, with the loss, metrics, optimizer and learning rate chosen."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = Model(build_module(config, data))
    classify = data.classes is not None
    loss = get_loss(config.loss or ("sparse_categorical_crossentropy" if classify else "mse"))
    if hasattr(loss, "from_logits"):
        loss.from_logits = config.model == "mlp"  # the MLP ends in logits; a user's model in probabilities
    model.compile(optimizer=config.optimizer, loss=loss,
                  metrics=config.metrics if config.metrics is not None else ["accuracy" if classify else "mae"])
    if config.lr is not None:
        if isinstance(config.lr, bool) or not isinstance(config.lr, (int, float)) or not 0 <= config.lr < math.inf:
            raise CliError(f"--lr must be a finite number >= 0. Received: {config.lr}")
        for group in model.optimizer.param_groups:  # type: ignore[union-attr]
            group["lr"] = config.lr
    return model
