"""A stand-in for `epochal.Model` so callbacks can be driven by hand, hook by hook."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from epochal import saving


@dataclass
class StubModel:
    """What a callback may see of a model (`epochal.callbacks.callback.ModelView`), one optimizer."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stop_training: bool = False
    history: object = field(default=None)
    device: torch.device = torch.device("cpu")

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def save_weights(self, path: str) -> None:
        saving.save_weights(self.module, path)

    def save(self, path: str, metadata: Mapping[str, Any] | None = None) -> None:
        saving.save_checkpoint(path, self.module, self.optimizers, metadata)


@pytest.fixture
def model() -> StubModel:
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    return StubModel(module, torch.optim.SGD(module.parameters(), lr=0.1))


@pytest.fixture
def attach(model):
    """Give a callback the stub model and run params, as `fit` does before `on_train_begin`."""

    def attach(callback, **params):
        callback.set_model(model)
        callback.set_params({"epochs": 10, "steps": 4, "batch_size": 8, "samples": 32, "initial_epoch": 0,
                             "verbose": 0, "do_validation": True, "metrics": ["loss", "val_loss"], **params})
        return callback

    return attach
