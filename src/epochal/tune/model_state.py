"""A model's state before a trial (weights, optimizer state, every RNG), to put it back exactly after."""

from __future__ import annotations

import copy
from typing import Protocol

import torch

from epochal.training.rng import capture_rng, restore_rng


class HasState(Protocol):
    """What a snapshot saves of a compiled `epochal.Model`."""

    module: torch.nn.Module

    @property
    def optimizer(self) -> torch.optim.Optimizer | None: ...


class Snapshot:
    """The weights, buffers, optimizer state and random generators of `model` as they are now."""

    def __init__(self, model: HasState) -> None:
        if model.optimizer is None:
            raise RuntimeError("You must call `compile()` before tuning: the trials train the model.")
        self.model = model
        self.weights = {name: tensor.detach().clone() for name, tensor in model.module.state_dict().items()}
        self.optimizer = copy.deepcopy(model.optimizer.state_dict())
        self.rng = capture_rng()

    def restore(self) -> None:
        """Put the model back as it was; may be called after every trial."""
        self.model.module.load_state_dict(self.weights)
        # A copy each time: the optimizer adopts the tensors it is given and updates them in place.
        self.model.optimizer.load_state_dict(copy.deepcopy(self.optimizer))  # type: ignore[union-attr]
        restore_rng(self.rng)
