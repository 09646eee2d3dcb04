"""Optimizer updates as pure tensor math, so a compiled graph can hold the whole train step.

Only the update rule lives here; the numbers live in the real `torch.optim.Optimizer`: its state
tensors (`step`, `exp_avg`, `exp_avg_sq`, `momentum_buffer`) are created in torch's own layout, read
before each call and written back in place by the compiled step, and its hyperparameters
(`param_groups[i]["lr"]`, betas, ...) are read before each call into one small tensor per group, so
a learning-rate schedule changes the update without recompiling. Adam's bias corrections are
computed on the host too, in double precision as torch's own Adam does (`step_table`): inside the
graph a scalar `beta ** step` is fused into every element's loop and recomputed there (measured:
about half the compiled step time of a small MLP). After training, `optimizer`'s
`state_dict()` is what torch itself would hold, and its eager `step()` can continue from it.

Supported: `torch.optim.SGD` (momentum, nesterov, weight decay, maximize; dampening only once the
momentum buffers exist), `torch.optim.Adam` and `torch.optim.AdamW` (weight decay, maximize; not
amsgrad), whose formulas follow torch's single-tensor implementations; and Keras's optimizers
(`epochal.optimizers`) but Ftrl, whose update is the same `apply_update` their eager `step()` runs, fed
0-dim tensors for numbers and host-computed step scalars (their step counts stay on the host, counted
by `advance`, so the graph touches only device tensors).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from epochal.optimizers import KerasOptimizer

_ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def unsupported_reason(optimizer: torch.optim.Optimizer) -> str | None:
    """Why `optimizer` has no tensor-math update here, or None when it has one."""
    kind = type(optimizer)
    if any(p.is_sparse for group in optimizer.param_groups for p in group["params"]):
        return "sparse parameters have no compiled update"
    if isinstance(optimizer, KerasOptimizer):
        return None if optimizer.compiles else f"its optimizer {kind.__name__} has no compiled update"
    if kind not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        return f"its optimizer {kind.__name__} has no compiled update (SGD, Adam and AdamW have)"
    for group in optimizer.param_groups:
        if group.get("amsgrad"):
            return "amsgrad=True has no compiled update"
        if group.get("differentiable"):
            return "differentiable=True has no compiled update"
        if kind is torch.optim.SGD and group["momentum"] != 0 and group["dampening"] != 0:
            missing = any("momentum_buffer" not in optimizer.state.get(p, {}) for p in group["params"])
            if missing:
                return "SGD with dampening has no compiled first step"
    return None


class FunctionalOptimizer:
    """The update rule of `optimizer` for its parameters, flattened in `param_groups` order."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.keras = optimizer if isinstance(optimizer, KerasOptimizer) else None
        self.adam = isinstance(optimizer, torch.optim.Adam)
        self.counts_steps = self.adam or (self.keras is not None and self.keras.counts_steps)
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.group_of = [i for i, group in enumerate(optimizer.param_groups) for _ in group["params"]]
        self._seen: list[tuple[Any, ...]] = []
        self.hyper: list[torch.Tensor] = []
        self.structure: tuple[Any, ...] = ()
        self._steps: list[float] | None = None  # each parameter's Adam step count; None: read it again
        self._table_index: tuple[tuple[int, ...], torch.Tensor] | None = None
        self._bound: tuple[list[list[torch.Tensor]], list[torch.Tensor], torch.Tensor | None] | None = None
        self.index = 0  # which of a step table's steps `step_in_place` takes (steps unrolled in one graph)
        self.without_grad: set[int] = set()  # positions the traced update skips (no gradient), so no step either
        self.refresh()

    # -- hyperparameters, outside the graph --------------------------------------------------

    def _numbers(self, group: dict[str, Any]) -> tuple[Any, ...]:
        if self.keras is not None:
            return self.keras.numbers(group)
        if self.adam:
            return group["lr"], *group["betas"], group["eps"], group["weight_decay"]
        return group["lr"], group["momentum"], group["dampening"], group["weight_decay"]

    def _flags(self, group: dict[str, Any]) -> tuple[Any, ...]:
        if self.keras is not None:
            return self.keras.flags(group)
        decoupled = group.get("decoupled_weight_decay", False) or isinstance(self.optimizer, torch.optim.AdamW)
        if self.adam:
            return group["maximize"], group["weight_decay"] != 0, decoupled
        return group["maximize"], group["weight_decay"] != 0, group["momentum"] != 0, group["nesterov"]

    def refresh(self) -> bool:
        """Copy changed hyperparameters into the group tensors; True when the graph's structure changed."""
        groups = self.optimizer.param_groups
        seen = [self._numbers(group) for group in groups]
        if seen == self._seen:
            return False
        structure = tuple(self._flags(group) for group in groups)
        changed = bool(self._seen) and structure != self.structure
        device = self.parameters[0].device
        self.hyper = [torch.tensor([float(v) for v in numbers], dtype=torch.float32, device=device)
                      for numbers in seen]
        self._seen, self.structure = seen, structure
        return changed

    def step_table(self, steps: int) -> torch.Tensor | None:
        """The step-dependent numbers of the next `steps` steps of every parameter, None when none are.

        Row `[p, i]` holds them for parameter `p`'s step `k` = its current count + `i` + 1, in float64,
        then float32: for torch's Adam `(lr / (1 - beta1 ** k), sqrt(1 - beta2 ** k))`, torch's eager
        formulas; for Keras's optimizers their `step_scalars`.
        """
        if not self.counts_steps:
            return None
        if self._steps is None:
            counts = self._step_counts()
            device = counts[0].device
            self._steps = torch.stack([count.to(device) for count in counts]).tolist()
        rows: dict[tuple[int, float], int] = {}
        row_of = tuple(rows.setdefault((group, step), len(rows)) for group, step in zip(self.group_of, self._steps))
        values = []
        for group_index, step in rows:
            values.append([self._step_scalars(group_index, k) for k in range(int(step) + 1, int(step) + 1 + steps)])
        table = torch.tensor(values, dtype=torch.float32)
        if self._table_index is None or self._table_index[0] != row_of:
            self._table_index = (row_of, torch.tensor(row_of))
        table = table.index_select(0, self._table_index[1])
        device = self.parameters[0].device
        return table if device.type == "cpu" else table.pin_memory().to(device, non_blocking=True)

    def _step_scalars(self, group_index: int, step: int) -> tuple[float, ...]:
        numbers = tuple(float(v) for v in self._seen[group_index])
        if self.keras is not None:
            return self.keras.step_scalars(numbers, step)
        lr, beta1, beta2 = numbers[:3]
        return lr / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step)

    def _step_counts(self) -> list[torch.Tensor]:
        """Each parameter's `step` tensor (creating the state as its optimizer would)."""
        states = self.state()  # creates what is missing, Keras's host step counts included
        if self.keras is not None:
            return [self.optimizer.state[p]["step"] for p in self.parameters]
        return [state[0] for state in states]

    def advance(self, steps: int) -> None:
        """Count `steps` compiled updates of every parameter (what the graph did to torch Adam's `step`
        tensors; Keras's optimizers keep theirs on the host, out of the graph, so they are counted here)."""
        if self.keras is not None:
            self.keras.count_steps([p for position, p in enumerate(self.parameters)
                                    if position not in self.without_grad], steps)
        if self._steps is not None:
            self._steps = [count + (0 if position in self.without_grad else steps)
                           for position, count in enumerate(self._steps)]

    def forget_steps(self) -> None:
        """Read the step counts from the optimizer's state again before the next table: an eager step,
        a restored checkpoint or a new fit may have changed them."""
        self._steps = None

    # -- state, outside the graph ------------------------------------------------------------

    def state(self) -> list[list[torch.Tensor]]:
        """The optimizer's state tensors per parameter, created as torch would if missing."""
        result = []
        for parameter, group_index in zip(self.parameters, self.group_of):
            state = self.optimizer.state[parameter]
            if self.keras is not None:
                result.append(self.keras.slots_of(parameter, self.optimizer.param_groups[group_index]))
            elif self.adam:
                if not state:
                    group = self.optimizer.param_groups[group_index]
                    on_device = group.get("fused") or group.get("capturable")
                    state["step"] = torch.zeros((), dtype=torch.float32,
                                                device=parameter.device if on_device else "cpu")
                    state["exp_avg"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                result.append([state[key] for key in _ADAM_STATE])
            elif self.structure[group_index][2]:  # SGD with momentum
                if "momentum_buffer" not in state or state["momentum_buffer"] is None:
                    # dampening is 0 here (see unsupported_reason): torch's first buffer is the
                    # gradient itself, which is what 0 * momentum + gradient gives.
                    state["momentum_buffer"] = torch.zeros_like(parameter)
                result.append([state["momentum_buffer"]])
            else:
                result.append([])
        return result

    # -- the update, inside the graph --------------------------------------------------------

    def bind(self, state: list[list[torch.Tensor]], hyper: list[torch.Tensor], table: torch.Tensor | None) -> None:
        """The graph's inputs `step_in_place` reads: the state tensors, hyperparameters and step table."""
        self._bound = (state, hyper, table)

    def step_in_place(self) -> None:
        """`optimizer.step()` as tensor math on the parameters' `.grad`: what the compiled step traces."""
        assert self._bound is not None
        state, hyper, table = self._bound
        with torch.no_grad():
            grads = [p.grad for p in self.parameters]
            # Runs while the graph is traced: the parameters without a gradient are the same in every call.
            self.without_grad = {position for position, grad in enumerate(grads) if grad is None}
            if self.keras is not None:
                self._keras_update(grads, state, hyper, table)
                return
            new_params, new_state = self.update(self.parameters, grads, state, hyper, table, self.index)
            for parameter, value in zip(self.parameters, new_params):
                if value is not parameter:
                    parameter.copy_(value)
            for targets, values in zip(state, new_state):
                for target, value in zip(targets, values):
                    if value is not target:
                        target.copy_(value)

    def _keras_update(self, grads: list[torch.Tensor | None], states: list[list[torch.Tensor]],
                      hyper: list[torch.Tensor], table: torch.Tensor | None) -> None:
        """A Keras optimizer's `apply_update`, its eager formula, per parameter, in place."""
        assert self.keras is not None
        for position, (param, grad, state, group_index) in enumerate(zip(self.parameters, grads, states,
                                                                          self.group_of)):
            if grad is not None:
                scalars = () if table is None else table[position, self.index].unbind()
                self.keras.apply_update([param], [grad], [[slot] for slot in state], hyper[group_index].unbind(),
                                        self.structure[group_index], scalars)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor | None], states: list[list[torch.Tensor]],
               hyper: list[torch.Tensor], table: torch.Tensor | None,
               index: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """New parameters and new state after step `index` of a `step_table` (pure: nothing changes in place).

        A parameter without a gradient keeps its value and state, as torch's optimizers skip it."""
        new_params, new_states = [], []
        for position, (param, grad, state, group_index) in enumerate(zip(params, grads, states, self.group_of)):
            if grad is None:
                new_params.append(param)
                new_states.append(state)
                continue
            flags, numbers = self.structure[group_index], hyper[group_index]
            if table is not None:
                param, state = self._adam(param, grad, state, numbers, flags, table[position, index])
            else:
                param, state = self._sgd(param, grad, state, numbers, flags)
            new_params.append(param)
            new_states.append(state)
        return new_params, new_states

    @staticmethod
    def _adam(param: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], numbers: torch.Tensor,
              flags: tuple[Any, ...], corrections: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maximize, decays, decoupled = flags
        lr, beta1, beta2, eps, weight_decay = numbers.unbind()
        step, exp_avg, exp_avg_sq = state
        grad = -grad if maximize else grad
        if decays:
            if decoupled:
                param = param * (1 - lr * weight_decay)
            else:
                grad = grad + weight_decay * param
        step = step + 1
        exp_avg = exp_avg.lerp(grad, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
        step_size, bias_correction2_sqrt = corrections.unbind()
        denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
        param = param - step_size * exp_avg / denom
        return param, [step, exp_avg, exp_avg_sq]

    @staticmethod
    def _sgd(param: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], numbers: torch.Tensor,
             flags: tuple[Any, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maximize, decays, has_momentum, nesterov = flags
        lr, momentum, dampening, weight_decay = numbers.unbind()
        grad = -grad if maximize else grad
        if decays:
            grad = grad + weight_decay * param
        if has_momentum:
            buffer = state[0] * momentum + (1 - dampening) * grad
            grad = grad + momentum * buffer if nesterov else buffer
            state = [buffer]
        return param - lr * grad, state
