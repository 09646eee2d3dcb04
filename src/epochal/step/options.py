"""The compile options that shape the train step: compilation, CUDA graphs, precision, clipping, accumulation,
activation checkpointing.

They are checked once, in `compile`, and carried as one frozen value to the step pipeline, whose layers
(`gradients`, `compiled`, `executions`, `precision`) read them; `History.params` shows them (`as_params`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

JitCompile = bool | Literal["auto"]
Precision = Literal["32", "bf16-mixed", "16-mixed"]
PRECISIONS = ("32", "bf16-mixed", "16-mixed")

#: `jit_compile="auto"` compiles when a fit plans at least this many training batches (known in advance).
#: Compiling the whole step costs ~10-40 s on a small CPU and saves ~0.5 ms per small batch at best,
#: so shorter runs lose more than they gain; on CUDA compilation pays off sooner (see `auto_compiles`).
AUTO_COMPILE_MIN_BATCHES = 20_000
AUTO_COMPILE_MIN_BATCHES_CUDA = 2_000


@dataclass(frozen=True)
class StepOptions:
    """How each training step runs; the defaults are plain eager float32 steps.

    Attributes:
        jit_compile: `True` runs the whole step (forward, loss, backward, optimizer update, metric
            values) as one compiled graph; `"auto"` does so when the fit is long enough to repay the
            compile time (`auto_compiles`); `False` runs eagerly.
        steps_per_execution: Batches run per call of the step (Keras's name): with `N > 1`, `N`
            consecutive full batches are stacked and run in one call (one compiled graph when
            compiled), and batch callbacks fire once per call.
        cuda_graphs: Replay the compiled train step as a CUDA graph on CUDA devices (one launch
            per call); needs `jit_compile`, and does nothing on other devices.
        precision: `"32"`, `"bf16-mixed"` (autocast to bfloat16) or `"16-mixed"` (autocast to
            float16 with a dynamic loss scaler).
        clipnorm: Clip each gradient tensor to this L2 norm (Keras).
        clipvalue: Clip each gradient element to `[-clipvalue, clipvalue]` (Keras).
        global_clipnorm: Clip all gradients together as `torch.nn.utils.clip_grad_norm_` does.
        gradient_accumulation_steps: Sum the gradients of this many batches (each batch's loss
            divided by it) before one optimizer update.
        checkpoint_modules: The names of the submodules whose activations are recomputed in the
            backward instead of kept (`activation_checkpointing`).
    """

    jit_compile: JitCompile = False
    steps_per_execution: int = 1
    cuda_graphs: bool = False
    precision: Precision = "32"
    clipnorm: float | None = None
    clipvalue: float | None = None
    global_clipnorm: float | None = None
    gradient_accumulation_steps: int = 1
    checkpoint_modules: tuple[str, ...] = ()

    @property
    def clips(self) -> bool:
        return self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None

    def auto_compiles(self, planned_batches: int | None, device_type: str) -> bool:
        """Whether `jit_compile` asks for a compiled step in a fit of `planned_batches` batches."""
        if self.jit_compile != "auto":
            return bool(self.jit_compile)
        if planned_batches is None:
            return False
        threshold = AUTO_COMPILE_MIN_BATCHES_CUDA if device_type == "cuda" else AUTO_COMPILE_MIN_BATCHES
        return planned_batches >= threshold

    def as_params(self) -> dict[str, Any]:
        """The options as `History.params` entries."""
        return {
            "jit_compile": self.jit_compile, "steps_per_execution": self.steps_per_execution,
            "cuda_graphs": self.cuda_graphs,
            "precision": self.precision, "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "checkpoint_modules": list(self.checkpoint_modules),
        }


def make_step_options(
    *,
    jit_compile: Any = False,
    steps_per_execution: Any = 1,
    cuda_graphs: Any = False,
    precision: Any = "32",
    clipnorm: Any = None,
    clipvalue: Any = None,
    global_clipnorm: Any = None,
    gradient_accumulation_steps: Any = 1,
    checkpoint_modules: tuple[str, ...] = (),
) -> StepOptions:
    """Check the step options of `compile` and bundle them; a bad value is a ValueError/TypeError.

    `checkpoint_modules` comes checked (`activation_checkpointing.checkpointed_names` needs the module)."""
    if jit_compile not in (True, False, "auto") or not isinstance(jit_compile, (bool, str)):
        raise ValueError(f'`jit_compile` must be True, False or "auto". Received: jit_compile={jit_compile!r}')
    _positive_int("steps_per_execution", steps_per_execution)
    if not isinstance(cuda_graphs, bool):
        raise TypeError(f"`cuda_graphs` must be True or False. Received: cuda_graphs={cuda_graphs!r}")
    if cuda_graphs and jit_compile is False:
        raise ValueError("`cuda_graphs=True` replays the compiled train step, so it needs jit_compile=True or "
                         "\"auto\". Received: jit_compile=False")
    _positive_int("gradient_accumulation_steps", gradient_accumulation_steps)
    if isinstance(precision, int) and not isinstance(precision, bool) and precision == 32:
        precision = "32"
    if precision not in PRECISIONS:
        raise ValueError(
            f'`precision` must be one of "32", "bf16-mixed", "16-mixed". Received: precision={precision!r}'
        )
    clipping = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
    for name, value in clipping.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`{name}` must be a number or None. Received: {name}={value!r}")
        if not value > 0:
            raise ValueError(f"`{name}` must be positive. Received: {name}={value!r}")
    chosen = [name for name, value in clipping.items() if value is not None]
    if len(chosen) > 1:
        raise ValueError(
            "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set (as in Keras). "
            f"Received: {', '.join(f'{name}={clipping[name]!r}' for name in chosen)}"
        )
    return StepOptions(
        jit_compile=jit_compile,  # type: ignore[arg-type]  # checked above
        steps_per_execution=steps_per_execution, cuda_graphs=cuda_graphs, precision=precision,
        clipnorm=None if clipnorm is None else float(clipnorm),
        clipvalue=None if clipvalue is None else float(clipvalue),
        global_clipnorm=None if global_clipnorm is None else float(global_clipnorm),
        gradient_accumulation_steps=gradient_accumulation_steps, checkpoint_modules=checkpoint_modules,
    )


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
