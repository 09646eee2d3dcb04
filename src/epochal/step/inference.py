"""`jit_compile` for evaluation and prediction: the pipeline's own test and predict calls, compiled.

- Test (validation in a fit, `evaluate`): one graph, specialised to the warm-up's batch shape and to
  the first real batch shape of each pass (up to `MAX_GRAPHS` shapes); a batch of any other shape (the
  short last batch) runs the eager test step on the same weights. Padding it instead would change what it returns: a test step
  returns its batch's mean loss and metrics, which padded rows would enter.
- Predict: batch sizes are bucketed. A batch smaller than a compiled graph's batch is padded up to it
  with copies of its last row, and only its own rows of the outputs are kept, so the short last batch
  runs the full batches' graph instead of compiling another. Up to `MAX_GRAPHS` buckets; other
  shapes run eagerly. Padding assumes what batching a prediction already assumes: in eval mode a
  sample's outputs do not depend on the other samples of its batch (true of linear, convolution,
  normalisation in eval mode, attention within a sample).

Outside a fit, the first test batch runs eagerly (it names the test step's logs) and the graph is
compiled on the next; a prediction compiles on its first batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from epochal.data.batch import Batch
from epochal.data.structure import Tree, flatten, map_structure
from epochal.step.executions import shapes
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
        self._predict: dict[tuple[object, ...], Callable[..., Tree]] = {}  # bucket's x shapes -> graph
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

    def predict(self, batch: Batch) -> Tree | None:
        """The predict step's outputs for `batch` from the graph of the smallest bucket that holds it."""
        if self._predict_failed:
            return None
        size = batch.size
        bucket = self._bucket(batch.x, size)
        if bucket is None:
            return None
        key, rows = bucket
        x = batch.x if rows == size else map_structure(lambda t: _padded(t, rows), batch.x)
        try:
            outputs = self._predict[key](x)
        except Exception as error:  # noqa: BLE001 - reported, then eager
            self._predict_failed = True
            self.failed(error)
            return None
        if rows == size:
            return outputs
        if any(not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != rows for t in flatten(outputs)):
            self._predict_failed = True
            self._fall_back("the predict step returns outputs that are not one row per sample, so a short batch "
                            "cannot be padded to a compiled batch size")
            return None
        return map_structure(lambda t: t[:size], outputs)

    def _bucket(self, x: Tree, size: int) -> tuple[tuple[object, ...], int] | None:
        """(graph key, its batch size) for a batch of `size` rows shaped as `x`; compiles a new bucket if allowed."""
        sample = _sample_shapes(x)
        fitting = [(rows, key) for key, (rows, other) in ((key, _split(key)) for key in self._predict)
                   if other == sample and rows >= size]
        if fitting:
            rows, key = min(fitting, key=lambda entry: entry[0])
            return key, rows
        if not self.may_compile or len(self._predict) >= MAX_GRAPHS:
            return None
        key = (size, sample)
        pipeline = self.pipeline

        def predict_call(x: Tree) -> Tree:
            return pipeline.predict_one(Batch(x))

        self._predict[key] = self._compile(predict_call)
        return key, size

    def failed(self, error: Exception) -> None:
        self._fall_back(compile_failure(error))


def compile_failure(error: BaseException) -> str:
    """Why a step runs eagerly after `error` from torch.compile, in one line for the warning."""
    text = str(error).strip()
    return f"torch.compile failed: {type(error).__name__}: {text.splitlines()[0] if text else '(no message)'}"


def _sample_shapes(x: Tree) -> tuple[object, ...]:
    """The structure, per-sample shapes and dtypes of `x` (all but the batch axis)."""
    return tuple((tuple(t.shape[1:]), t.dtype) for t in flatten(x))


def _split(key: tuple[object, ...]) -> tuple[int, tuple[object, ...]]:
    rows, sample = key
    return rows, sample  # type: ignore[return-value]


def _padded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """`tensor` with copies of its last row appended up to `rows` rows."""
    extra = rows - tensor.shape[0]
    return torch.cat([tensor, tensor[-1:].expand(extra, *tensor.shape[1:])])
