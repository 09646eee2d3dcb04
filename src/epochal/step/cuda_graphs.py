"""`cuda_graphs=True`: the compiled train step replayed as a CUDA graph, one launch per call instead of
one per kernel, which is most of a small model's step on a GPU.

A CUDA graph replays the kernels of one recorded call on the same memory addresses. The state the
step updates in place (parameters, buffers, optimizer state) keeps its addresses from call to call;
the other inputs (the batch, the hyperparameters, Adam's step table) are copied into the graph's own
input tensors before each replay, and the values it returns are copied out of the graph's memory.
When a state tensor is replaced (an optimizer state loaded from a checkpoint), the next call runs
the step directly and records the graph again on the new tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from epochal.data.structure import flatten, map_structure


class GraphedStep:
    """`step(*state, *inputs)`, recorded once as a CUDA graph and replayed; the same values and updates.

    `step` is a compiled train step that updates its first `state_arguments` arguments in place, and
    the tensors `held()` returns (the module's weights and buffers, which it reads without taking them
    as arguments). Its first call on a state runs it directly (its own warm-up: lazy initialisation and
    autotuning must not happen while recording), then records the graph for the calls after it.
    """

    def __init__(self, step: Callable[..., torch.Tensor], state_arguments: int,
                 held: Callable[[], list[torch.Tensor]] = list) -> None:
        self.step, self._split, self._held = step, state_arguments, held
        self._graph: torch.cuda.CUDAGraph | None = None
        self._recorded_on: tuple[int, ...] | None = None  # the state's addresses the graph writes to
        self._inputs: list[torch.Tensor] = []  # the graph's own copies of the other inputs
        self._values: torch.Tensor | None = None  # where the graph leaves its output
        self.failure: str | None = None  # why this step runs without a graph, once it does

    def __call__(self, *arguments: Any) -> torch.Tensor:
        state, inputs = arguments[:self._split], arguments[self._split:]
        addresses = tuple(t.data_ptr() for t in _leaves(state) + self._held())
        if self.failure is not None or addresses != self._recorded_on:
            values = self.step(*arguments)
            if self.failure is None:
                self._record(state, inputs, addresses)
            return values
        for target, value in zip(self._inputs, _leaves(inputs)):
            target.copy_(value, non_blocking=True)
        assert self._graph is not None and self._values is not None
        self._graph.replay()
        return self._values.clone()

    def _record(self, state: tuple[Any, ...], inputs: tuple[Any, ...], addresses: tuple[int, ...]) -> None:
        leaves = _leaves(state) + self._held() + _leaves(inputs)
        elsewhere = sorted({str(t.device) for t in leaves if not t.is_cuda})
        if elsewhere:
            self._give_up(f"some of its tensors are on {', '.join(elsewhere)} (Adam keeps its step counts on the "
                          "CPU unless it is fused or capturable, as optimizer=\"adam\" is on CUDA)")
            return
        copies = [None if tree is None else map_structure(torch.clone, tree) for tree in inputs]
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                values = self.step(*state, *copies)
        except Exception as error:  # noqa: BLE001 - any recording failure means "run without a graph"
            message = (str(error).strip() or "(no message)").splitlines()[0]
            self._give_up(f"recording it failed: {type(error).__name__}: {message}")
            return
        self._graph, self._values, self._recorded_on = graph, values, addresses
        self._inputs = _leaves(copies)

    def _give_up(self, reason: str) -> None:
        self.failure = reason
        self._graph = self._values = None
        warnings.warn(f"cuda_graphs: the compiled train step runs without a CUDA graph because {reason}.",
                      stacklevel=5)


def _leaves(tree: Any) -> list[torch.Tensor]:
    return [leaf for leaf in flatten(tree) if leaf is not None]
