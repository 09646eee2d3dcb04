"""`jit_compile`: the whole train step — forward, loss, backward, optimizer update, metric values — as
one `torch.compile`d graph per call, and the test step likewise.

How it stays one graph: gradients come from `torch.func.grad_and_value` over `functional_call` (a
`backward()` would break the graph), and the optimizer update is tensor math
(`functional_optim`). With `steps_per_execution=N`, `N` steps are unrolled into one graph when a
step is short (`UNROLL_BELOW_SECONDS`); longer steps run as `N` calls of the one-step graph. With
`cuda_graphs=True` on CUDA, each compiled train graph is replayed as a CUDA graph (`cuda_graphs`).

What stays true:
- The module's parameters and buffers and the optimizer's state are the real ones, updated in place
  by the graph; the learning rate and other hyperparameters are read from `param_groups` before
  every call (as graph inputs), so schedulers, checkpoints and weight restores work unchanged.
- The graphs are specialised to one batch shape (`dynamic=False`). Full batches that do not fill an
  execution run the one-step graph; a batch of any other shape — the short last batch, other
  validation data — runs the eager step on the same state instead: no recompilation, and the loss,
  metric and BatchNorm semantics of that batch are exactly the eager ones.
- Compilation happens in `prepare`, before `on_train_begin`, on clones of the state (the global RNG
  is restored afterwards), so compile time is outside every epoch's figures.
- When the step cannot be compiled (an unsupported optimizer or option, or `torch.compile` fails),
  it runs eagerly after one warning that says why.

Known differences from eager: dropout draws different random numbers; parameters the loss does
not use get a zero gradient (so weight decay and momentum still move them), where torch skips them.
"""

from __future__ import annotations

import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.func import functional_call, grad_and_value

from epochal.step.clipping import clip_gradients
from epochal.step.cuda_graphs import GraphedStep
from epochal.data.batch import Batch
from epochal.data.structure import Tree, map_structure
from epochal.step.eager import EagerTestStep, EagerTrainStep
from epochal.step.executions import Execution, row, shapes, stack
from epochal.step.functional_optim import FunctionalOptimizer, unsupported_reason
from epochal.step.precision import autocast
from epochal.step.options import StepOptions
from epochal.task import Task

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


class CompiledSteps:
    """Compiled train and test steps, each with its eager twin for batches the graph does not fit."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task,
                 options: StepOptions, device: torch.device) -> None:
        self.module, self.optimizer, self.task, self.options, self.device = module, optimizer, task, options, device
        self.eager_train = EagerTrainStep(module, optimizer, task, options, device)
        self.eager_test = EagerTestStep(module, task, options.precision, device)
        self.enabled = options.jit_compile is True  # decided again per fit (jit_compile="auto") in `prepare`
        self.prepared = False
        self._warned = False
        self._step: Callable[..., torch.Tensor] | None = None  # one train step per call
        self._step_signature: tuple[object, ...] | None = None
        self._execution_signature: tuple[object, ...] | None = None  # steps_per_execution such batches
        self._unrolled: Callable[..., torch.Tensor] | None = None  # steps_per_execution steps per call
        self._test: Callable[..., torch.Tensor] | None = None
        self._test_signatures: set[tuple[object, ...]] = set()
        self._test_adopted = False  # whether a real batch (not the warm-up's guess) chose a test graph
        self._optim: FunctionalOptimizer | None = None

    # -- before a fit ---------------------------------------------------------------------------

    def prepare(self, batch: Batch, planned_batches: int | None, validates: bool = True) -> None:
        """Decide whether this fit compiles, and compile (warm up) on `batch` if so."""
        self.prepared = True
        self.enabled = self.options.auto_compiles(planned_batches, self.device.type)
        if not self.enabled:
            return
        reason = self._unsupported_reason()
        if reason is not None:
            self._fall_back(reason)
            return
        guess = Batch(batch.x, batch.y, None)
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                if self._step is None or shapes(batch) != self._step_signature:
                    self._warm_up_train(batch)
                if validates and shapes(guess) not in self._test_signatures:
                    self._warm_up_test(guess)
        except Exception as error:  # noqa: BLE001 - any compiler failure means "run eagerly", reported below
            self._fall_back(f"torch.compile failed: {type(error).__name__}: {_first_line(error)}")
        if self._optim is not None:
            self._optim.forget_steps()  # `on_train_begin` may still restore a checkpoint's optimizer state

    def _unsupported_reason(self) -> str | None:
        if self.options.precision == "16-mixed":
            return 'precision="16-mixed" needs a loss scaler that skips steps, which is eager-only'
        if self.options.gradient_accumulation_steps > 1:
            return "gradient_accumulation_steps > 1 is eager-only"
        if self.task.stateful():
            return "stateful (torchmetrics) metrics update their state outside any graph"
        return unsupported_reason(self.optimizer)

    def _fall_back(self, reason: str) -> None:
        self.enabled = False
        if not self._warned:
            self._warned = True
            warnings.warn(f"jit_compile: the train and test steps run eagerly because {reason}.", stacklevel=4)

    # -- train ----------------------------------------------------------------------------------

    def train(self, batch: Batch | Execution) -> torch.Tensor:
        if not self.prepared and self.enabled:  # train_on_batch before any fit
            self.prepare(batch if isinstance(batch, Batch) else batch.batches()[0], None, validates=False)
        optim, step = self._optim, self._step
        fits = self._execution_signature if isinstance(batch, Execution) else self._step_signature
        if not self.enabled or step is None or shapes(batch) != fits:
            if optim is not None:
                optim.forget_steps()
            return self.eager_train(batch)
        assert optim is not None
        if optim.refresh():  # a flag such as nesterov changed: new graphs
            self._step = step = self._replayed(self._compile_train(1))
            if self._unrolled is not None:
                self._unrolled = self._replayed(self._compile_train(self.options.steps_per_execution))
        if isinstance(batch, Execution) and self._unrolled is not None:
            return self._call(self._unrolled, batch, batch.steps)
        if isinstance(batch, Execution):  # long steps: a loop of one-step calls costs nothing noticeable
            return torch.stack([self._call(step, part, 1) for part in batch.batches()])
        return self._call(step, batch, 1)

    def _call(self, graph: Callable[..., torch.Tensor], batch: Batch | Execution, steps: int) -> torch.Tensor:
        optim = self._optim
        assert optim is not None
        values = graph(self._trainable, self._frozen, self._buffers, optim.state(), optim.hyper,
                       optim.step_table(steps), batch.x, batch.y, batch.sample_weight)
        optim.advance(steps)
        return values

    def _warm_up_train(self, batch: Batch) -> None:
        """Compile the one-step graph on `batch`, and the unrolled one when steps are short enough."""
        self._optim = FunctionalOptimizer(self.optimizer)
        trainable_ids = {id(p) for p in self._optim.parameters}
        named = dict(self.module.named_parameters())
        by_id = {id(p): name for name, p in named.items()}
        missing = [p for p in self._optim.parameters if id(p) not in by_id]
        if missing:
            raise ValueError("the optimizer holds tensors that are not parameters of the module")
        self._names = [by_id[id(p)] for p in self._optim.parameters]
        self._trainable = [p.detach() for p in self._optim.parameters]
        self._frozen = {name: p.detach() for name, p in named.items() if id(p) not in trainable_ids}
        self._buffers = dict(self.module.named_buffers())
        steps = self.options.steps_per_execution
        self._step, self._unrolled = self._compile_train(1), None
        seconds = self._warm_up_call(self._step, batch, 1, timed=2 if steps > 1 else 0)
        execution = stack([batch] * steps) if steps > 1 else batch
        self._step_signature, self._execution_signature = shapes(batch), shapes(execution)
        if steps > 1 and seconds < UNROLL_BELOW_SECONDS:
            self._unrolled = self._compile_train(steps)
            self._warm_up_call(self._unrolled, execution, steps, timed=0)
            self._unrolled = self._replayed(self._unrolled)
        self._step = self._replayed(self._step)

    def _replayed(self, graph: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """`graph` replayed as a CUDA graph when `cuda_graphs` asks for it and the step runs on CUDA."""
        if self.options.cuda_graphs and self.device.type == "cuda":
            return GraphedStep(graph, state_arguments=4)  # trainable, frozen, buffers, optimizer state
        return graph

    def _warm_up_call(self, graph: Callable[..., torch.Tensor], example: Batch | Execution, steps: int,
                      timed: int) -> float:
        """Call `graph` on clones of the state (compiling it), then `timed` more times -> the fastest."""
        assert self._optim is not None
        state = map_structure(torch.clone, (self._trainable, self._frozen, self._buffers, self._optim.state()))
        fastest = float("inf")
        for call in range(1 + timed):
            started = time.perf_counter()
            graph(*state, self._optim.hyper, self._optim.step_table(steps), example.x, example.y,
                  example.sample_weight)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the step's time, not its launch's
            if call:
                fastest = min(fastest, time.perf_counter() - started)
        return fastest

    def _compile_train(self, steps: int) -> Callable[..., torch.Tensor]:
        """The train step compiled with `steps` steps unrolled (inputs `[steps, batch, ...]` if > 1)."""
        optim, options, names = self._optim, self.options, self._names
        assert optim is not None
        loss_and_values = self._loss_and_values

        def one_step(trainable: list[torch.Tensor], frozen: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                     state: list[list[torch.Tensor]], hyper: list[torch.Tensor], table: torch.Tensor | None,
                     index: int, x: Tree, y: Tree, sample_weight: torch.Tensor | None
                     ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]], torch.Tensor]:
            def loss(params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
                tensors = {**frozen, **dict(zip(names, params)), **buffers}
                return loss_and_values(tensors, x, y, sample_weight)

            grads, (_, values) = grad_and_value(loss, has_aux=True)(trainable)
            if options.clips:
                grads = clip_gradients(grads, options)
            new_params, new_state = optim.update(trainable, grads, state, hyper, table, index)
            return new_params, new_state, values

        def train_step(trainable: list[torch.Tensor], frozen: dict[str, torch.Tensor],
                       buffers: dict[str, torch.Tensor], state: list[list[torch.Tensor]], hyper: list[torch.Tensor],
                       table: torch.Tensor | None, x: Tree, y: Tree, sample_weight: torch.Tensor | None) -> torch.Tensor:
            params, current = trainable, state
            if steps == 1:
                params, current, values = one_step(params, frozen, buffers, current, hyper, table, 0, x, y,
                                                  sample_weight)
            else:
                rows = []
                for i in range(steps):
                    x_i, y_i = row(x, i), row(y, i)
                    w_i = None if sample_weight is None else sample_weight[i]
                    params, current, values_i = one_step(params, frozen, buffers, current, hyper, table, i, x_i, y_i,
                                                    w_i)
                    rows.append(values_i)
                values = torch.stack(rows)
            for target, value in zip(trainable, params):
                target.copy_(value)
            for targets, values_ in zip(state, current):
                for target, value in zip(targets, values_):
                    target.copy_(value)
            return values

        return _compile(_own_code(train_step), self.device)

    def _loss_and_values(self, tensors: dict[str, torch.Tensor], x: Tree, y: Tree,
                         sample_weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.options.precision, self.device):
            if isinstance(x, dict):
                outputs = functional_call(self.module, tensors, (), x)
            elif isinstance(x, (tuple, list)):
                outputs = functional_call(self.module, tensors, tuple(x))
            else:
                outputs = functional_call(self.module, tensors, (x,))
            return self.task.compute(outputs, y, sample_weight)

    # -- test -----------------------------------------------------------------------------------

    def test(self, batch: Batch) -> torch.Tensor:
        """Loss and metric values of one batch; the caller sets eval mode and no_grad."""
        if self.enabled and self.task.stateful():
            self._fall_back("stateful (torchmetrics) metrics update their state outside any graph")
        if not self.enabled:
            return self.eager_test(batch)
        signature = shapes(batch)
        first_real, self._test_adopted = not self._test_adopted, True
        if signature in self._test_signatures:
            return self._compiled_test()(batch.x, batch.y, batch.sample_weight)
        if not first_real:  # one graph for the first real shape (and the warm-up's); others run eagerly
            return self.eager_test(batch)
        try:
            values = self._compiled_test()(batch.x, batch.y, batch.sample_weight)
        except Exception as error:  # noqa: BLE001 - reported, then eager
            self._fall_back(f"torch.compile failed: {type(error).__name__}: {_first_line(error)}")
            return self.eager_test(batch)
        self._test_signatures.add(signature)
        return values

    def _warm_up_test(self, batch: Batch) -> None:
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                self._compiled_test()(batch.x, batch.y, batch.sample_weight)
        finally:
            self.module.train(was_training)
        self._test_signatures.add(shapes(batch))

    def _compiled_test(self) -> Callable[..., torch.Tensor]:
        if self._test is None:
            values = _own_code(EagerTestStep.values).__get__(self.eager_test)
            self._test = _compile(values, self.device)
        return self._test

    # -- end of a pass --------------------------------------------------------------------------

    def flush(self) -> None:
        self.eager_train.flush()
        if self._optim is not None:
            self._optim.forget_steps()  # between epochs a callback may restore or replace optimizer state


def _compile(function: Any, device: torch.device) -> Callable[..., Any]:
    """`torch.compile(function)` with this module's settings for graphs that run on `device`."""
    settings = dict(_COMPILE)
    if settings.get("backend", "inductor") == "inductor":
        settings["backend"] = _cpu_inductor if device.type == "cpu" else "inductor"
        if device.type != "cpu":
            settings["options"] = _INDUCTOR_OPTIONS
    return torch.compile(function, **settings)


def _cpu_inductor(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
    """TorchInductor with `_INDUCTOR_OPTIONS`, lowering the `_CPU_LOWERED` ops itself.

    torch's compile caches do not key a graph on the decomposition table: a graph an older epochal
    cached is reused as it is (the same values, the older kernels) until that cache is cleared."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    lowered = {getattr(torch.ops.aten, name).default for name in _CPU_LOWERED}
    table = {op: rule for op, rule in select_decomp_table().items() if op not in lowered}
    return compile_fx(graph, example_inputs, config_patches=_INDUCTOR_OPTIONS, decompositions=table)


def _own_code(function: Any) -> Any:
    """`function` with a code object of its own: torch.compile caches graphs per code object (at most
    8), so each Model's steps get their own cache instead of evicting other Models' graphs."""
    code = function.__code__.replace()
    return types.FunctionType(code, function.__globals__, function.__name__, function.__defaults__,
                              function.__closure__)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"
