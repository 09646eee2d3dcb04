"""`jit_compile`: the pipeline's own train call — forward, loss, backward, gradient sync, clipping,
optimizer update, log values — traced into one `torch.compile` graph, and its test call into another.

It compiles the same code the eager step runs (`StepPipeline.train_one`, hence the model's default or
custom `train_step`), with two things swapped for graph-friendly equivalents while it is traced: the
backward is traced into the graph (dynamo's `trace_autograd_ops`), and each optimizer's `step()` is
its tensor-math update (`functional_optim`), since `torch.optim` steps break graphs. With
`steps_per_execution=N`, `N` steps are unrolled into one graph when a step is short
(`UNROLL_BELOW_SECONDS`); longer steps run as `N` calls of the one-step graph. With `cuda_graphs=True`
on CUDA, each compiled train graph is replayed as a CUDA graph (`cuda_graphs`). The test and predict
calls are compiled too (`inference`), in a fit and in `evaluate` and `predict`.

What stays true:
- The module's parameters and buffers and the optimizer's state are the real ones, updated in place;
  the learning rate and other hyperparameters are read from `param_groups` before every call (as graph
  inputs), so schedules, checkpoints and weight restores work unchanged.
- The graphs are specialised to one batch shape (`dynamic=False`). Full batches that do not fill an
  execution run the one-step graph; a training or test batch of any other shape — the short last
  batch, other validation data — runs the eager step on the same state instead, and a short predict
  batch is padded to a compiled batch size: no recompilation.
- Compilation happens in `prepare`, before `on_train_begin`: one eager step on an example batch (it
  builds the losses and metrics and runs the first-batch checks), then the compiled warm-up calls;
  weights, buffers, gradients, optimizer state and the random generators are restored afterwards, so
  compile time is outside every epoch and the run starts from the state it had.
- When the step cannot be compiled (an unsupported optimizer or option, or `torch.compile` fails on
  the user's code), it runs eagerly after one warning that says why.

Known difference from eager: dropout draws different random numbers.
"""

from __future__ import annotations

import contextlib
import copy
import time
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from epochal.data.batch import Batch
from epochal.data.structure import Tree
from epochal.step import onednn
from epochal.step.cuda_graphs import GraphedStep
from epochal.step.executions import Execution, row, shapes, stack
from epochal.step.functional_optim import FunctionalOptimizer, unsupported_reason
from epochal.step.gradients import Gradients
from epochal.step.inference import InferenceGraphs, compile_failure
from epochal.step.options import StepOptions
from epochal.step.values import StepValues

_COMPILE: dict[str, Any] = {"fullgraph": True, "dynamic": False}
#: TorchInductor's options for these graphs: store every reused intermediate instead of recomputing it
#: in each consumer. With steps unrolled, inductor otherwise recomputes chains of earlier steps' Adam
#: moments inside later steps' kernels (W1, one thread: fused kernels ~540 -> ~250 us per step).
_INDUCTOR_OPTIONS = {"realize_reads_threshold": 1}
#: ATen ops that inductor lowers itself on the CPU instead of taking torch's decomposition. torch 2.13
#: decomposes max-pool's backward into zero-fill + `scatter_add`; inductor's own lowering gathers each
#: input's gradient from its pooling windows without atomics (W3, one thread: ~3.8k -> ~4.5k samples/s).
_CPU_LOWERED = ("max_pool2d_with_indices_backward",)
#: With `steps_per_execution > 1`, steps are unrolled into one graph only when one compiled step
#: takes less than this: unrolling saves the ~0.1-0.3 ms of Python and dispatch per call, which is
#: most of a small step (W2: ~0.1 ms) and nothing of a large one (W3: ~20 ms), whose unrolled graph
#: takes minutes to compile (W3, 8 steps: ~100 s against ~25 s for one).
UNROLL_BELOW_SECONDS = 0.008

Precheck = Callable[[], "str | None"]


class Calls(Protocol):
    """The step pipeline's calls this layer compiles (`StepPipeline` is one)."""

    def train_one(self, batch: Batch) -> StepValues: ...

    def test_one(self, batch: Batch) -> StepValues: ...

    def predict_one(self, batch: Batch) -> Tree: ...

    def keys(self, step: str) -> tuple[str, ...]: ...

    def known_keys(self, step: str) -> tuple[str, ...] | None: ...


class CompiledSteps:
    """The pipeline's train, test and predict calls compiled; each returns None for a batch its graphs do not take."""

    def __init__(self, pipeline: Calls, module: torch.nn.Module, gradients: Gradients,
                 options: StepOptions, device: torch.device, largest: Callable[[float], float]) -> None:
        self.pipeline, self.module, self.gradients = pipeline, module, gradients
        self.options, self.device = options, device
        #: Every rank's decisions must agree (the graphs hold collectives): the largest of their values.
        self.largest = largest
        #: Why the model's steps cannot compile, asked after the first (eager) step built its metrics.
        self.precheck: Precheck = lambda: None
        self.enabled = False  # decided per fit (jit_compile="auto") in `prepare`
        self._waiting: bool | None = None  # compile on the first training batch (its value: `validates`)
        self._warned = False
        self._optimizers: dict[str, FunctionalOptimizer] = {}
        self._updates: dict[str, Callable[[], None]] = {}
        self._step: Callable[..., torch.Tensor] | None = None  # one train step per call
        self._unrolled: Callable[..., torch.Tensor] | None = None  # steps_per_execution steps per call
        self._step_signature: tuple[object, ...] | None = None
        self._execution_signature: tuple[object, ...] | None = None
        self.inference = InferenceGraphs(pipeline, lambda function: _compile(_own_code(function), device,
                                                                              backward=False),
                                         self._fall_back, lambda: self.precheck())

    # -- before a fit ---------------------------------------------------------------------------

    def prepare(self, example: Batch | None, planned_batches: int | None, validates: bool) -> None:
        """Decide whether this fit compiles, and compile on `example` (state restored) if so.

        Without an example (a one-shot stream cannot be peeked at), the first training batch is the
        example, and compilation happens when it arrives."""
        self.enabled = self.options.auto_compiles(planned_batches, self.device.type)
        self._waiting = None
        self.inference.new_pass(self.enabled)
        if not self.enabled:
            return
        reason = self._unsupported_reason()
        if reason is not None:
            self._fall_back(reason)
        elif example is None:
            self._waiting = validates
        else:
            self._compile_on(example, validates)

    def _compile_on(self, example: Batch, validates: bool) -> None:
        was_training = self.module.training
        self.module.train()
        try:
            with self._state_restored():
                self.pipeline.train_one(example)  # eager: builds losses and metrics, runs first-batch checks
                reason = self.precheck()
                if reason is not None:
                    self._fall_back(reason)
                    return
                failure = None
                try:
                    if self._step is None or shapes(example) != self._step_signature:
                        self._warm_up_train(example)
                    guess = Batch(example.x, example.y, None)
                    if validates and not self.inference.has_test_graph(guess):
                        self._warm_up_test(guess)
                except Exception as error:  # noqa: BLE001 - any compiler failure means "run eagerly", reported below
                    failure = compile_failure(error)
                if self.largest(float(failure is not None)):  # all ranks compiled, or all run eagerly
                    self._fall_back(failure or "torch.compile failed in another process")
        finally:
            self.module.train(was_training)

    def _unsupported_reason(self) -> str | None:
        if self.options.precision == "16-mixed":
            return 'precision="16-mixed" needs a loss scaler that skips steps, which is eager-only'
        if self.options.gradient_accumulation_steps > 1:
            return "gradient_accumulation_steps > 1 is eager-only"
        for optimizer in self.gradients.optimizers.values():
            reason = unsupported_reason(optimizer)
            if reason is not None:
                return reason
        return None

    def prepare_inference(self, planned_batches: int | None) -> None:
        """Before `evaluate` or `predict`: whether it may compile test or predict graphs (`jit_compile`,
        or `"auto"` for a pass of enough batches); graphs compiled before run in any case."""
        self.inference.new_pass(self.options.auto_compiles(planned_batches, self.device.type))

    def _fall_back(self, reason: str) -> None:
        self.enabled = self.inference.may_compile = False
        if not self._warned:
            self._warned = True
            warnings.warn(f"jit_compile: the steps run eagerly because {reason}.", stacklevel=5)

    @contextlib.contextmanager
    def _state_restored(self) -> Iterator[None]:
        """Everything a step changes — weights, buffers, gradients, optimizer and loss-scaler state,
        the random generators — put back as it was (in place, so the graphs keep their tensors)."""
        tensors = [t for t in (*self.module.parameters(), *self.module.buffers())]
        values = [t.detach().clone() for t in tensors]
        grads = [p.grad for p in self.module.parameters()]
        optimizers = {name: copy.deepcopy(opt.state_dict()) for name, opt in self.gradients.optimizers.items()}
        pending = self.gradients.state_dict()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                yield
        finally:
            with torch.no_grad():
                for tensor, value in zip(tensors, values):
                    tensor.copy_(value)
            for parameter, grad in zip(self.module.parameters(), grads):
                parameter.grad = grad
            for name, state in optimizers.items():
                self.gradients.optimizers[name].load_state_dict(state)
            self.gradients.load_state_dict(pending)
            self.forget_steps()

    # -- train ----------------------------------------------------------------------------------

    def train(self, batch: Batch | Execution) -> StepValues | None:
        """`batch`'s values from the compiled graph, or None when it does not take that batch."""
        if self._waiting is not None:
            validates, self._waiting = self._waiting, None
            self._compile_on(batch if isinstance(batch, Batch) else batch.batches()[0], validates)
        step = self._step
        if not self.enabled or step is None or not self._fits(batch):
            self.forget_steps()  # the eager step that runs instead advances Adam's step counts itself
            return None
        if any([optim.refresh() for optim in self._optimizers.values()]):  # a flag such as nesterov changed
            self._step = step = self._replayed(self._compile_train(1))
            if self._unrolled is not None:
                self._unrolled = self._replayed(self._compile_train(self.options.steps_per_execution))
        if isinstance(batch, Execution) and self._unrolled is not None:
            values = self._call(self._unrolled, batch, batch.steps)
        elif isinstance(batch, Execution):  # long steps: a loop of one-step calls costs nothing noticeable
            values = torch.stack([self._call(step, part, 1) for part in batch.batches()])
        else:
            values = self._call(step, batch, 1)
        return StepValues(self.pipeline.keys("train_step"), values)

    def _fits(self, batch: Batch | Execution) -> bool:
        """The graph's shapes, and (under torch.distributed) a full share of the global batch."""
        if isinstance(batch, Execution):
            return shapes(batch) == self._execution_signature
        return batch.loss_scale == 1.0 and shapes(batch) == self._step_signature

    def _call(self, graph: Callable[..., torch.Tensor], batch: Batch | Execution, steps: int) -> torch.Tensor:
        names = list(self._optimizers)
        states = [self._optimizers[name].state() for name in names]
        hypers = [self._optimizers[name].hyper for name in names]
        tables = [self._optimizers[name].step_table(steps) for name in names]
        with self._functional_updates():
            values = graph(states, batch.x, batch.y, batch.sample_weight, hypers, tables)
        for name in names:
            self._optimizers[name].advance(steps)
        return values

    @contextlib.contextmanager
    def _functional_updates(self) -> Iterator[None]:
        """The optimizers' tensor-math updates in place of their `step()` while a graph runs or is traced."""
        eager, self.gradients.updates = self.gradients.updates, self._updates
        try:
            yield
        finally:
            self.gradients.updates = eager

    def _warm_up_train(self, batch: Batch) -> None:
        """Compile the one-step graph on `batch`, and the unrolled one when steps are short enough."""
        self._optimizers = {name: FunctionalOptimizer(opt) for name, opt in self.gradients.optimizers.items()}
        self._updates = {name: optim.step_in_place for name, optim in self._optimizers.items()}
        steps = self.options.steps_per_execution
        self._step, self._unrolled = self._compile_train(1), None
        seconds = self._timed_calls(self._step, batch, 1, timed=2 if steps > 1 else 0)
        execution = stack([batch] * steps) if steps > 1 else batch
        self._step_signature, self._execution_signature = shapes(batch), shapes(execution)
        if steps > 1 and self.largest(seconds) < UNROLL_BELOW_SECONDS:  # the same choice on every rank
            self._unrolled = self._compile_train(steps)
            self._timed_calls(self._unrolled, execution, steps, timed=0)
            self._unrolled = self._replayed(self._unrolled)
        self._step = self._replayed(self._step)

    def _replayed(self, graph: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """`graph` replayed as a CUDA graph when `cuda_graphs` asks for it and the step runs on CUDA."""
        if self.options.cuda_graphs and self.device.type == "cuda":
            return GraphedStep(graph, state_arguments=1, held=self._held_tensors)
        return graph

    def _held_tensors(self) -> list[torch.Tensor]:
        """Tensors a graph reads and writes in place besides its arguments: the module's weights and buffers."""
        return [*self.module.parameters(), *self.module.buffers()]

    def _timed_calls(self, graph: Callable[..., torch.Tensor], example: Batch | Execution, steps: int,
                     timed: int) -> float:
        """Call `graph` (compiling it), then `timed` more times -> the fastest of those (inf if none)."""
        fastest = float("inf")
        for call in range(1 + timed):
            started = time.perf_counter()
            self._call(graph, example, steps)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the step's time, not its launch's
            if call:
                fastest = min(fastest, time.perf_counter() - started)
        return fastest

    def _compile_train(self, steps: int) -> Callable[..., torch.Tensor]:
        """The pipeline's train call compiled with `steps` steps unrolled (inputs `[steps, batch, ...]` if > 1)."""
        pipeline, optimizers = self.pipeline, list(self._optimizers.values())

        def train_call(states: list[list[list[torch.Tensor]]], x: Tree, y: Tree, sample_weight: torch.Tensor | None,
                       hypers: list[list[torch.Tensor]], tables: list[torch.Tensor | None]) -> torch.Tensor:
            for optim, state, hyper, table in zip(optimizers, states, hypers, tables):
                optim.bind(state, hyper, table)
                optim.index = 0  # set, not read: the graph must not depend on what the last call left there
            if steps == 1:
                return pipeline.train_one(Batch(x, y, sample_weight)).tensor
            rows = []
            for i in range(steps):
                for optim in optimizers:
                    optim.index = i
                w_i = None if sample_weight is None else sample_weight[i]
                rows.append(pipeline.train_one(Batch(row(x, i), row(y, i), w_i)).tensor)
            return torch.stack(rows)

        return _compile(_own_code(train_call), self.device, backward=True)

    # -- test -----------------------------------------------------------------------------------

    def test(self, batch: Batch) -> StepValues | None:
        """`batch`'s test values from a compiled graph, or None when it runs eagerly (see `inference`)."""
        return self.inference.test(batch)

    def predict(self, batch: Batch | Execution) -> Tree | None:
        """`batch`'s predict outputs from a compiled graph, or None when it runs eagerly (see `inference`)."""
        return self.inference.predict(batch)

    def _warm_up_test(self, batch: Batch) -> None:
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                self.inference.warm_up_test(batch)
        finally:
            self.module.train(was_training)

    # -- between passes -------------------------------------------------------------------------

    def forget_steps(self) -> None:
        """Read Adam's step counts again before the next compiled call: an eager step, a restored
        checkpoint or another fit may have changed them."""
        for optim in self._optimizers.values():
            optim.forget_steps()


def _compile(function: Any, device: torch.device, *, backward: bool) -> Callable[..., Any]:
    """`torch.compile(function)` with this module's settings for graphs that run on `device`. With
    `backward`, the backward a train step calls is traced into its graph (dynamo's `trace_autograd_ops`,
    set around each call of these graphs only). Test and predict graphs have no backward and go without:
    the switch cost 120-190 µs a call on the loaded 2-vCPU machine, more than a W2 predict batch."""
    compiled = torch.compile(function, **_settings(device))
    if not backward:
        return compiled
    from torch._dynamo import config  # here, not at the top: importing dynamo costs ~1.4 s, paid only to compile

    def traced(*args: Any) -> Any:
        with config.patch(trace_autograd_ops=True):
            return compiled(*args)

    return traced


def compile_forward(forward: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """A module's `forward` compiled on its own (an FSDP unit's, whose all-gather hooks stay outside the
    graph): graph breaks allowed and shapes that vary (a short last batch) made dynamic, so an unusual
    forward still runs, partly compiled."""
    return torch.compile(forward, **{**_settings(device), "fullgraph": False, "dynamic": None})


def _settings(device: torch.device) -> dict[str, Any]:
    """`torch.compile`'s arguments for graphs that run on `device`."""
    settings = dict(_COMPILE)
    if settings.get("backend", "inductor") == "inductor":
        settings["backend"] = _cpu_inductor if device.type == "cpu" else "inductor"
        if device.type != "cpu":
            settings["options"] = _INDUCTOR_OPTIONS
    return settings


def _cpu_inductor(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
    """TorchInductor with `_INDUCTOR_OPTIONS`, lowering the `_CPU_LOWERED` ops itself and running large
    float32 matrix products in oneDNN (`onednn`).

    torch's compile caches do not key a graph on the decomposition table: a graph an older epochal
    cached is reused as it is (the same values, the older kernels) until that cache is cleared."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    lowered = {getattr(torch.ops.aten, name).default for name in _CPU_LOWERED}
    table = {op: rule for op, rule in select_decomp_table().items() if op not in lowered}
    table.update(onednn.decompositions())
    return compile_fx(graph, example_inputs, config_patches=_INDUCTOR_OPTIONS, decompositions=table)


def _own_code(function: Any) -> Any:
    """`function` with a code object of its own: torch.compile caches graphs per code object (at most
    8), so each Model's steps get their own cache instead of evicting other Models' graphs."""
    code = function.__code__.replace()
    return types.FunctionType(code, function.__globals__, function.__name__, function.__defaults__,
                              function.__closure__)
