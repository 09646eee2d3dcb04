"""A running average of a module's parameters, shared by `EMA` and `SWA`: torch's `AveragedModel` does
the maths; this adds exact state for backups and in-place copies, so the module's tensors (and any
compiled graph or CUDA graph holding their addresses) stay the same objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel


class AveragedWeights:
    """The average of `module`'s parameters over the updates so far (none until the first `update`).

    `multi_avg_fn` is one of torch's averaging rules (`get_ema_multi_avg_fn(decay)`); `None` is the
    equal-weight average of SWA. The first update copies the weights, as torch and Keras both do.
    Buffers (BatchNorm statistics) are not averaged.
    """

    def __init__(self, module: torch.nn.Module, multi_avg_fn: Callable[..., None] | None = None) -> None:
        self.module = module
        self.averaged = AveragedModel(module, multi_avg_fn=multi_avg_fn)
        self._held: list[torch.Tensor] | None = None

    @property
    def updates(self) -> int:
        """How many times the weights have been averaged in."""
        return int(self.averaged.n_averaged)

    def update(self) -> None:
        """Average the module's current weights in."""
        self.averaged.update_parameters(self.module)

    @torch.no_grad()
    def copy_to_module(self) -> None:
        """Overwrite the module's parameters with the average, in place."""
        for parameter, average in zip(self.module.parameters(), self.averaged.parameters()):
            parameter.copy_(average)

    @torch.no_grad()
    def swap_in(self) -> None:
        """Put the average into the module, keeping its own weights to `swap_out` later (bit for bit)."""
        if self._held is None:
            self._held = [parameter.detach().clone() for parameter in self.module.parameters()]
            self.copy_to_module()

    @torch.no_grad()
    def swap_out(self) -> None:
        """Give the module back the weights `swap_in` kept."""
        if self._held is not None:
            for parameter, held in zip(self.module.parameters(), self._held):
                parameter.copy_(held)
            self._held = None

    def state_dict(self) -> dict[str, Any]:
        """The averaged parameters and the update count (tensors only), as `AveragedModel` holds them."""
        return {name: tensor.detach() for name, tensor in self.averaged.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.averaged.load_state_dict(dict(state))
