"""`jit_compile` for evaluation and prediction: the pipeline's own test and predict calls, compiled.

- Test (validation in a fit, `evaluate`): one graph, specialised to the warm-up's batch shape and to
  the first real batch shape of each pass (up to `MAX_GRAPHS` shapes); a batch of any other shape
  (the short last batch) runs the eager test step on the same weights. Padding it instead would
  change what it returns: a test step returns its batch's mean loss and metrics, which padded rows
  would enter.
- Predict: batch sizes are bucketed. A batch smaller than a compiled graph's batch is padded up to it
  with copies of its last row, and only its own rows of the outputs are kept, so the short last batch
  runs the full batches' graph instead of compiling another. With `steps_per_execution=N`, `N` full
  batches run in one call of a graph that applies the predict step to each (as Keras's predict), and
  the batches left over run the one-batch graph. Up to `MAX_GRAPHS` graphs; other shapes run eagerly.
  Padding assumes what batching a prediction already assumes: in eval mode a sample's outputs do not
  depend on the other samples of its batch (true of linear, convolution, normalisation in eval mode,
  attention within a sample).

Outside a fit, the first test batch runs eagerly (it names the test step's logs) and the graph is
compiled on the next; a prediction compiles on its first batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from epochal.data.batch import Batch
from epochal.data.structure import Tree, flatten, join_rows, map_structure
from epochal.step.executions import Execution, row, shapes
from epochal.step.values import StepValues

#: Test shapes and predict buckets (batch size and the shapes of a sample) one model compiles, each at most.
MAX_GRAPHS = 4

Compiler = Callable[[Callable[..., Any]], Callable[..., Any]]


class InferenceCalls(Protocol):
    """The step pipeline's calls this layer compiles (`StepPipeline` is one)."""

    def test_one(self, batch: Batch) -> StepValues: ...

    def predict_one(self, batch: Batch) -> Tree: ...

    def keys(self, step: str) -> tuple[str, ...]: ...

    def known_keys(self, step: str) -> tuple[str, ...] | None: ...


class InferenceGraphs:
    """Compiled test and predict calls; each returns None for a batch that runs eagerly instead.

    `compile_graph` compiles a function (the settings of `epochal.step.compiled`); `fall_back(reason)`
    switches compilation off with one warning; `precheck()` says why the model's test step cannot
    compile (None when it can), asked once its first batch has built the metrics."""

    def __init__(self, pipeline: InferenceCalls, compile_graph: Compiler, fall_back: Callable[[str], None],
                 precheck: Callable[[], str | None]) -> None:
        self.pipeline, self._compile, self._fall_back, self._precheck = pipeline, compile_graph, fall_back, precheck
        #: Whether new graphs may be compiled now (set per fit, evaluate or predict); graphs already built run anyway.
        self.may_compile = False
        self._test: Callable[..., torch.Tensor] | None = None
        self._test_signatures: set[tuple[object, ...]] = set()
        self._chosen: tuple[object, ...] | None = None  # the first real test batch's shape in this pass
        self._buckets: dict[tuple[tuple[object, ...], int], Callable[..., Tree]] = {}  # (sample shapes, rows) -> graph
        self._executions: dict[tuple[object, ...], Callable[..., Tree]] = {}  # stacked batches' shapes -> graph
        self._full_rows = 0  # the batch size of the last Execution predicted
        self._predict_failed = False

    # -- test -----------------------------------------------------------------------------------

    def test(self, batch: Batch) -> StepValues | None:
        """`batch`'s test values from the test graph of its shape: the warm-up's, or the first real shape of a pass."""
        signature = shapes(batch)
        if self._chosen is None:
            self._chosen = signature
        if signature not in self._test_signatures:
            if not self.may_compile or signature != self._chosen or len(self._test_signatures) >= MAX_GRAPHS:
                return None  # another shape (the short last batch), or compiling not asked for
            if self.pipeline.known_keys("test_step") is None:
                return None  # eager: this first batch names the test step's logs; the next one compiles
            reason = self._precheck()
            if reason is not None:
                self._fall_back(reason)
                return None
        try:
            values = self._test_graph()(batch.x, batch.y, batch.sample_weight)
        except Exception as error:  # noqa: BLE001 - reported, then eager
            self.failed(error)
            return None
        self._test_signatures.add(signature)
        return StepValues(self.pipeline.keys("test_step"), values)

    def has_test_graph(self, batch: Batch) -> bool:
        return shapes(batch) in self._test_signatures

    def warm_up_test(self, batch: Batch) -> None:
        """Compile the test graph on `batch` (eval mode, no gradients): its eager call first names the logs."""
        self.pipeline.test_one(batch)
        self._test_graph()(batch.x, batch.y, batch.sample_weight)
        self._test_signatures.add(shapes(batch))

    def new_pass(self, may_compile: bool) -> None:
        """A new fit, evaluate or predict: whether it may compile graphs; its first real test batch chooses
        the test graph's shape again."""
        self.may_compile, self._chosen = may_compile, None

    def _test_graph(self) -> Callable[..., torch.Tensor]:
        if self._test is None:
            pipeline = self.pipeline

            def test_call(x: Tree, y: Tree, sample_weight: torch.Tensor | None) -> torch.Tensor:
                return pipeline.test_one(Batch(x, y, sample_weight)).tensor

            self._test = self._compile(test_call)
        return self._test

    # -- predict --------------------------------------------------------------------------------

    def predict(self, batch: Batch | Execution) -> Tree | None:
        """The predict step's outputs for `batch` — an Execution's batches joined — from the graph of its
        shape, or of the smallest bucket that holds it."""
        if self._predict_failed:
            return None
        if isinstance(batch, Execution):
            graph = self._execution_graph(batch)
            return None if graph is None else self._run(graph, batch.x)
        size = batch.size
        graph, rows = self._bucket(batch.x, size)
        if graph is None or rows == size:
            return None if graph is None else self._run(graph, batch.x)
        outputs = self._run(graph, map_structure(lambda t: _padded(t, rows), batch.x))
        if outputs is None:
            return None
        if any(not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != rows for t in flatten(outputs)):
            self._predict_failed = True
            self._fall_back("the predict step returns outputs that are not one row per sample, so a short batch "
                            "cannot be padded to a compiled batch size")
            return None
        return map_structure(lambda t: t[:size], outputs)

    def _run(self, graph: Callable[..., Tree], x: Tree) -> Tree | None:
        try:
            return graph(x)
        except Exception as error:  # noqa: BLE001 - reported, then eager
            self._predict_failed = True
            self.failed(error)
            return None

    def _bucket(self, x: Tree, size: int) -> tuple[Callable[..., Tree] | None, int]:
        """The graph for a batch of `size` rows shaped as `x` and its batch size: the smallest bucket that
        holds them, else a new one if compiling is allowed (None if not)."""
        sample = _sample_shapes(x)
        fitting = [rows for shape, rows in self._buckets if shape == sample and rows >= size]
        if fitting:
            return self._buckets[sample, min(fitting)], min(fitting)
        if not self._room():
            return None, size
        size = max(size, self._full_rows)  # a short batch after executions: a graph the leftover full batches fit too
        pipeline = self.pipeline

        def predict_call(x: Tree) -> Tree:
            return pipeline.predict_one(Batch(x))

        graph = self._buckets[sample, size] = self._compile(predict_call)
        return graph, size

    def _execution_graph(self, execution: Execution) -> Callable[..., Tree] | None:
        self._full_rows = execution.size // execution.steps
        signature = shapes(execution)
        if signature not in self._executions and self._room():
            self._executions[signature] = self._compile(_unrolled_predict(self.pipeline, execution.steps))
        return self._executions.get(signature)

    def _room(self) -> bool:
        """Whether a new predict graph may be compiled: compiling is asked for and fewer than `MAX_GRAPHS` exist."""
        return self.may_compile and len(self._buckets) + len(self._executions) < MAX_GRAPHS

    def failed(self, error: Exception) -> None:
        self._fall_back(compile_failure(error))


def compile_failure(error: BaseException) -> str:
    """Why a step runs eagerly after `error` from torch.compile, in one line for the warning. A backend's
    failure says only "backend=... raised:" on its first line: the reason is its inner error's."""
    inner = getattr(error, "inner_exception", None)
    text = str(inner if inner is not None else error).strip()
    return f"torch.compile failed: {type(error).__name__}: {text.splitlines()[0] if text else '(no message)'}"


def _unrolled_predict(pipeline: InferenceCalls, steps: int) -> Callable[[Tree], Tree]:
    """The predict step on each of `steps` stacked batches, in one graph; their outputs joined."""

    def predict_calls(x: Tree) -> Tree:
        return join_rows([pipeline.predict_one(Batch(row(x, i))) for i in range(steps)])

    return predict_calls


def _sample_shapes(x: Tree) -> tuple[object, ...]:
    """The per-sample shapes (all but the batch axis) and dtypes of `x`'s tensors."""
    return tuple((tuple(t.shape[1:]), t.dtype) for t in flatten(x))


def _padded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """`tensor` with copies of its last row appended up to `rows` rows."""
    extra = rows - tensor.shape[0]
    return torch.cat([tensor, tensor[-1:].expand(extra, *tensor.shape[1:])])
