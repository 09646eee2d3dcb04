"""`Model.backward` and `Model.apply_gradients`: what every compile option does to gradients, written once.

A train step (the default one or a user's) computes a loss and calls `backward(loss, optimizer)`, then
`apply(optimizer)`. Between them sit, in this order:

- **loss scaling**: this rank's share of the global batch (`share`, set per batch under
  torch.distributed), `1 / gradient_accumulation_steps`, and the float16 loss scaler;
- **accumulation**: `apply` updates only every `gradient_accumulation_steps`-th call; gradients of the
  batches in between are summed (reset to None when a group starts, as `zero_grad(set_to_none=True)`);
- **gradient sync**: the distribution strategy's `sync_gradients(parameters)` (DDP's all-reduce),
  once per update;
- **unscaling and clipping** (`clipnorm`, `clipvalue`, `global_clipnorm`), per optimizer;
- **the update**: `optimizer.step()` (through the loss scaler in float16), or the compiled step's
  tensor-math update (`updates`, see `epochal.step.compiled`).

With several optimizers each has its own group, and `backward` computes gradients only for the named
optimizer's parameters, so one loss never leaks into another optimizer's accumulation.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from epochal.step.clipping import clip_gradients_
from epochal.step.options import StepOptions
from epochal.step.precision import make_scaler


class GradientSync(Protocol):
    """How the distribution strategy makes every rank's gradients the global batch's (a no-op alone)."""

    #: Parameters sharded over the ranks (FSDP), which a backward pass reaches only as a whole.
    sharded: bool

    def sync_gradients(self, parameters: list[torch.nn.Parameter]) -> None: ...


class Gradients:
    """Backward and update with the compile options, for named optimizers; see the module docstring."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer], options: StepOptions, device: torch.device,
                 sync: GradientSync) -> None:
        self.optimizers = dict(optimizers)
        self.options, self.sync = options, sync
        self.scaler = make_scaler(options.precision, device)
        self.accumulate = options.gradient_accumulation_steps
        self.parameters = {name: [p for group in opt.param_groups for p in group["params"]]
                           for name, opt in self.optimizers.items()}
        self.pending = dict.fromkeys(self.optimizers, 0)  # backward-and-apply rounds summed, not yet applied
        self.share = 1.0  # this rank's share of the global batch: its loss's weight in the global mean
        #: Each optimizer's update when the compiled step replaces `optimizer.step()` (empty: eager steps).
        self.updates: dict[str, Callable[[], None]] = {}
        self._backward_done: set[str] = set()  # optimizers with a backward in this step and no apply yet
        self._scaled_step = False  # the loss scaler stepped in this step, so it updates its scale after it
        self._saved: dict[str, Any] | None = None  # the state before a guarded step's first updates

    # -- what a train step calls --------------------------------------------------------------

    def name(self, optimizer: str | None) -> str:
        """The optimizer `optimizer` names (the only one when None); an unknown name is a ValueError."""
        if optimizer is None:
            if len(self.optimizers) == 1:
                return next(iter(self.optimizers))
            raise ValueError(f"This model has several optimizers ({', '.join(self.optimizers)}): name the one "
                             "to use, e.g. `self.backward(loss, optimizer=\"...\")`. Received: optimizer=None")
        if optimizer not in self.optimizers:
            raise ValueError(f"Unknown optimizer {optimizer!r}: this model's optimizers are "
                             f"{', '.join(map(repr, self.optimizers))}.")
        return optimizer

    def backward(self, loss: torch.Tensor, optimizer: str | None = None) -> None:
        """Gradients of `loss` for `optimizer`'s parameters, scaled as the compile options ask."""
        name = self.name(optimizer)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"`backward` takes the batch's scalar loss. Received: {shape}. Reduce it first "
                             "(e.g. `.mean()`).")
        if name in self._backward_done:
            raise RuntimeError(f"`backward` was called twice for optimizer {name!r} before `apply_gradients`: "
                               "add the losses and call `backward` once per update.")
        self._backward_done.add(name)
        if self.pending[name] == 0:
            for parameter in self.parameters[name]:
                parameter.grad = None
        scale = self.share / self.accumulate
        if scale != 1.0:
            loss = loss * scale
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        mixed = self.options.precision != "32"
        with torch.autocast(loss.device.type, enabled=False) if mixed else contextlib.nullcontext():
            # Backward runs outside mixed precision (its ops take the dtypes autocast gave the forward's).
            if len(self.optimizers) == 1:
                loss.backward()
            elif self.sync.sharded:
                self._backward_for(name, loss)
            else:
                loss.backward(inputs=self.parameters[name])

    def _backward_for(self, name: str, loss: torch.Tensor) -> None:
        """`loss.backward(inputs=name's parameters)` for sharded parameters, which FSDP's own backward hooks
        fill and `inputs=` cannot reach: every gradient is computed, and the other optimizers' are put back."""
        others = [p for other, params in self.parameters.items() if other != name for p in params]
        kept = [p.grad for p in others]
        for parameter in others:
            parameter.grad = None
        loss.backward()
        for parameter, grad in zip(others, kept):
            parameter.grad = grad

    def apply(self, optimizer: str | None = None) -> None:
        """Update `optimizer` from its gradients, or only count the batch while accumulating."""
        name = self.name(optimizer)
        if name not in self._backward_done:
            raise RuntimeError(f"`apply_gradients` for optimizer {name!r} has no gradients to apply: call "
                               "`backward(loss)` for it first, in the same train step.")
        self._backward_done.discard(name)
        self.pending[name] += 1
        if self.pending[name] == self.accumulate:
            self._update(name)

    def end_step(self, step: str = "train_step") -> None:
        """After a train step: every backward was applied; the loss scaler updates its scale once."""
        if self._backward_done:
            names = ", ".join(map(repr, sorted(self._backward_done)))
            self._backward_done.clear()
            raise RuntimeError(f"`{step}` called `backward` for {names} but not `apply_gradients`: call "
                               "`self.apply_gradients(...)` after each `backward`.")
        if self._scaled_step:
            self._scaled_step = False
            self.scaler.update()  # type: ignore[union-attr]

    def flush(self) -> None:
        """Apply groups cut short by the end of a pass, each as the mean of its batches."""
        for name, count in self.pending.items():
            if count == 0:
                continue
            scale = self.accumulate / count
            for parameter in self.parameters[name]:
                if parameter.grad is not None:
                    parameter.grad.mul_(scale)
            self._update(name)
        self.end_step()

    def _update(self, name: str) -> None:
        self.pending[name] = 0
        parameters, optimizer = self.parameters[name], self.optimizers[name]
        self.sync.sync_gradients(parameters)
        if self._saved is not None and name not in self._saved:
            self._saved[name] = _copied_state(parameters, optimizer)
        if self.scaler is not None:
            if self.options.clips:
                self.scaler.unscale_(optimizer)
                clip_gradients_(parameters, self.options)
            self.scaler.step(optimizer)
            self._scaled_step = True
            return
        if self.options.clips:
            clip_gradients_(parameters, self.options)
        if self.updates:
            self.updates[name]()
        else:
            optimizer.step()  # looked up now: an LR scheduler built later wraps `step` to count its calls

    # -- a guarded first step -----------------------------------------------------------------

    def guard(self) -> None:
        """Remember each optimizer's parameters and state before its next update, until `release`."""
        self._saved = {}

    def release(self, restore: bool) -> None:
        """Stop guarding; with `restore`, put back what the guarded updates changed."""
        saved, self._saved = self._saved, None
        if restore and saved:
            for name, (values, state) in saved.items():
                with torch.no_grad():
                    for parameter, value in zip(self.parameters[name], values):
                        parameter.copy_(value)
                self.optimizers[name].load_state_dict(state)

    # -- state, for backups -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The loss scaler, and each optimizer's pending group: its count and the gradients summed so far."""
        return {
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "pending": dict(self.pending),
            "gradients": {name: [None if p.grad is None else p.grad.detach().clone() for p in self.parameters[name]]
                          for name, count in self.pending.items() if count},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        pending = state.get("pending", {})
        for name in self.pending:
            self.pending[name] = int(pending.get(name, 0))
            saved = state.get("gradients", {}).get(name)
            for parameter, grad in zip(self.parameters[name], saved or []):
                parameter.grad = None if grad is None else grad.to(parameter.device, parameter.dtype).clone()


def _copied_state(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    return [p.detach().clone() for p in parameters], copy.deepcopy(optimizer.state_dict())
