"""Model: the facade users touch — compile once, then fit, evaluate and predict. Thin: it checks
arguments, builds data adapters and callbacks, and hands over to the loop."""

from __future__ import annotations

import contextlib
import os
import traceback
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Iterator

import torch

from epochal import saving
from epochal.parallel.cluster import connect
from epochal.parallel.process import barrier, is_main_process
from epochal.parallel.sync import LOCAL
from epochal.training import arguments as check
from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.callbacks.callback import Callback
from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.progress import format_logs, progress_callback, resolve_verbose
from epochal.data import (Adapter, ArrayAdapter, Batch, is_dataset, make_dataset_fit_data, make_eval_data, make_fit_data)
from epochal.data.checks import check_data
from epochal.data.structure import Tree, call_module, flatten, float_dtype_of, to_device, to_tensors
from epochal.callbacks.history import History
from epochal.logs import Logs
from epochal.training.loop import TRAIN_HOOKS, FitPlan, evaluate_pass, fit_loop, predict_pass, prefetch
from epochal.optimizers import make_optimizer
from epochal.training.preemption import SignalGuard
from epochal.step.options import StepOptions, make_step_options
from epochal.step.pipeline import StepFunctions, make_steps, predict_step
from epochal.task import Task
from epochal.training.state import TrainingState
from epochal.training.setup_checks import check_optimizer
from epochal.training.fingerprint import run_fingerprint, trajectory_arguments
from epochal.training.target_checks import arm_target_checks

if TYPE_CHECKING:
    from epochal.tune.lr_finder import LRFinderResult

_DEFAULT_BATCH_SIZE = 32


class Model:
    """Wraps a `torch.nn.Module` (not copied: `model.module` is it) with Keras's training API.

    Under `torchrun` the same script trains data-parallel (DDP); see `epochal.parallel`.

    Args:
        module: The network to train.
        device: Where to train. Defaults to CUDA when available (`cuda:LOCAL_RANK` under torchrun),
            else CPU.
        distributed: `None` trains data-parallel when launched by torchrun or when a process group is
            initialised; `True` requires that; `False` trains each process on its own. Defaults to `None`.

    Example:
        >>> import torch, epochal
        >>> model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> history = model.fit(torch.ones(8, 3), torch.zeros(8, 1), epochs=2, verbose=0)
        >>> history.epoch
        [0, 1]
    """

    def __init__(self, module: torch.nn.Module, device: str | torch.device | None = None, *,
                 distributed: bool | None = None) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module. Received: {type(module).__name__}")
        self.module = module
        self._cluster = connect(distributed)
        if self._cluster is not None:
            self.device = self._cluster.place(device)
        else:
            self.device = torch.device(device) if device is not None else torch.device(
                "cuda" if torch.cuda.is_available() else "cpu")
        module.to(self.device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.stop_training = False
        self.history: History | None = None
        self._task: Task | None = None
        self._steps: StepFunctions | None = None
        self._step_options = StepOptions()
        self._compile_options: dict[str, Any] = {}  # as given, for the run fingerprint
        self._running = False
        self.training_state: TrainingState | None = None  # where the last `fit` is or stopped

    # -- compile --------------------------------------------------------------------------------

    def compile(
        self,
        optimizer: str | torch.optim.Optimizer | Any = "rmsprop",
        loss: Any = None,
        metrics: Sequence[Any] | Mapping[str, Any] | None = None,
        loss_weights: Sequence[float] | Mapping[str, float] | None = None,
        *,
        jit_compile: bool | str = False,
        steps_per_execution: int = 1,
        cuda_graphs: bool = False,
        precision: str = "32",
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int = 1,
    ) -> None:
        """Choose the optimizer, loss(es) and metrics; calling it again rebuilds the optimizer.

        Args:
            optimizer: A name (Keras's learning rates), an Optimizer, or a callable params -> Optimizer.
                Defaults to `"rmsprop"`.
            loss: A Keras loss name, a `epochal.losses.Loss`, a callable (y_true, y_pred) or a torch
                loss module; a list or dict of them for several outputs.
            metrics: Metric names, torchmetrics Metrics or callables; a dict or list of lists per output.
                Defaults to `None`.
            loss_weights: Weights of each output's loss in the total. Defaults to `None` (all 1).
            jit_compile: `True` compiles the whole train step (forward, loss, backward, optimizer
                update) and the test step into one graph each; `"auto"` does so only when a fit plans
                enough batches to repay the compile time (20,000 on CPU, 2,000 on CUDA); a step that
                cannot be compiled runs eagerly after one warning. See `epochal.step.compiled`.
                Defaults to `False`.
            steps_per_execution: Batches stacked into one call of the train step (one graph when
                compiled); batch callbacks then fire once per call, with the index of its last batch.
                Defaults to `1`.
            cuda_graphs: On CUDA, replay each compiled train step as one CUDA graph instead of
                launching its kernels one by one (for small models, whose steps are mostly launch
                time). Needs `jit_compile`; does nothing on other devices. See `epochal.step.cuda_graphs`.
                Defaults to `False`.
            precision: `"32"`, `"bf16-mixed"` (bfloat16 autocast, CPU or CUDA) or `"16-mixed"`
                (float16 autocast with a dynamic loss scaler). Defaults to `"32"`.
            clipnorm: Clip each gradient tensor to this norm (Keras). Defaults to `None`.
            clipvalue: Clip each gradient element to `[-clipvalue, clipvalue]`. Defaults to `None`.
            global_clipnorm: Clip all gradients together, as `torch.nn.utils.clip_grad_norm_`.
                Defaults to `None`.
            gradient_accumulation_steps: Batches whose gradients are summed (each loss divided by
                it) before one optimizer update; an epoch's last, partial group is applied too.
                Defaults to `1`.
        """
        options = make_step_options(
            jit_compile=jit_compile, steps_per_execution=steps_per_execution, cuda_graphs=cuda_graphs,
            precision=precision,
            clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )
        self._task = Task(loss, metrics, loss_weights)
        self._compile_options = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights, **options.as_params()}
        self.optimizer = check_optimizer(self.module, make_optimizer(optimizer, self.module.parameters()))
        self._step_options = options
        if self._cluster is not None:  # DDP needs the eager step (see epochal.parallel)
            if not options.is_plain:
                warnings.warn("Under torch.distributed the train step is the eager DDP one: `jit_compile`, "
                              "`steps_per_execution`, `precision`, clipping and gradient accumulation do not "
                              f"apply. Received: {options}", stacklevel=2)
            self._steps = self._cluster.make_steps(self.module, self.optimizer, self._task)
        else:
            self._steps = make_steps(self.module, self.optimizer, self._task, options, self.device)

    # -- fit ------------------------------------------------------------------------------------

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Iterable[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        class_weight: Mapping[int, float] | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int | Sequence[int] = 1,
        check_finite: bool = True,
    ) -> History:
        """Train for epochs `initial_epoch .. epochs-1` and return the History (Keras semantics).

        The data is checked whole before training (`epochal.data.checks`): NaN or infinite values are
        an error unless `check_finite=False`; negative or misshapen weights and targets the loss
        cannot read always are.
        """
        self._require_idle("fit")
        task = self._require_compiled("fit")
        if is_dataset(x):
            _refuse_validation_split(validation_split, x)
            if y is not None:
                raise ValueError("`y` must be None when `x` is a dataset: it yields (x, y) batches itself.")
            if batch_size is not None:
                raise ValueError(
                    "`batch_size` must be None when `x` is a dataset: its elements are already batches. "
                    f"Received: batch_size={batch_size!r}"
                )
            if sample_weight is not None:
                raise ValueError(
                    "`sample_weight` must be None when `x` is a dataset: "
                    "yield (x, y, sample_weight) elements instead."
                )
            return self.fit_dataset(
                x, epochs=epochs, batches_per_epoch=steps_per_epoch, validation_data=validation_data,
                validation_batches=validation_steps, verbose=verbose, callbacks=callbacks,
                class_weight=class_weight, initial_epoch=initial_epoch,
                validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                check_finite=check_finite,
            )
        batch_size = _DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        self._check_loop_arguments(epochs, initial_epoch, verbose, validation_freq, class_weight)
        check.positive_int("batch_size", batch_size)
        check.positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
        check.positive_int("validation_steps", validation_steps, allow_none=True)
        check.positive_int("validation_batch_size", validation_batch_size, allow_none=True)
        check.validation_split(validation_split)
        given_validation = validation_data  # the whole of it, for the run fingerprint
        validation_data = self._local_dataset(validation_data, train=False)
        train, validation, samples = make_fit_data(
            x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=batch_size,
            shuffle=shuffle, validation_split=validation_split, validation_data=validation_data,
            validation_batch_size=validation_batch_size or batch_size, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, device=self.device, float_dtype=float_dtype_of(self.module),
            gather_batches=self._step_options.steps_per_execution,
        )
        held_out = "validation_data: " if validation_data is not None else "the validation_split part of "
        check_data([(train, ""), (validation, held_out)], check_finite=check_finite)
        data = {"train": train, "validation": given_validation if is_dataset(given_validation) else validation}
        train, validation = self._local_arrays(train, train=True), self._local_arrays(validation, train=False)
        return self._fit(task, train, validation, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose,
                         callbacks=callbacks, validation_freq=validation_freq, batch_size=batch_size,
                         samples=samples, data=data)

    def fit_dataset(
        self,
        dataset: Any,
        *,
        epochs: int,
        batches_per_epoch: int | None = None,
        validation_data: Any = None,
        validation_batches: int | None = None,
        verbose: int | str = "auto",
        callbacks: Iterable[Callback] | None = None,
        class_weight: Mapping[int, float] | None = None,
        initial_epoch: int = 0,
        validation_batch_size: int | None = None,
        validation_freq: int | Sequence[int] = 1,
        validation_split: float = 0.0,
        check_finite: bool = True,
    ) -> History:
        """Train on streaming data: a DataLoader, re-iterable or iterator of `(x, y[, w])` batches (TF.js).

        `validation_split` is accepted only to refuse it with a clear error (SPEC): a stream has no tail.
        Each batch is checked on the host before it reaches the step (`check_finite` as in `fit`).
        """
        self._require_idle("fit_dataset")
        task = self._require_compiled("fit_dataset")
        if not is_dataset(dataset):
            raise TypeError(
                "`dataset` must be a DataLoader, an iterable or an iterator of (x, y) batches. "
                f"Received: {type(dataset).__name__}. For arrays use fit(x, y)."
            )
        _refuse_validation_split(validation_split, dataset)
        self._check_loop_arguments(epochs, initial_epoch, verbose, validation_freq, class_weight)
        check.positive_int("batches_per_epoch", batches_per_epoch, allow_none=True)
        check.positive_int("validation_batches", validation_batches, allow_none=True)
        check.positive_int("validation_batch_size", validation_batch_size, allow_none=True)
        data = {"train": dataset, "validation": validation_data}  # the whole of them, for the run fingerprint
        dataset = self._local_dataset(dataset, train=True)
        validation_data = self._local_dataset(validation_data, train=False)
        train, validation = make_dataset_fit_data(
            dataset, batches_per_epoch=batches_per_epoch, validation_data=validation_data,
            validation_batches=validation_batches, validation_batch_size=validation_batch_size or _DEFAULT_BATCH_SIZE,
            class_weight=class_weight, device=self.device, float_dtype=float_dtype_of(self.module),
        )
        check_data([(train, ""), (validation, "validation_data: ")], check_finite=check_finite)
        validation = self._local_arrays(validation, train=False)
        return self._fit(task, train, validation, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose,
                         callbacks=callbacks, validation_freq=validation_freq, batch_size=None, samples=None,
                         data=data)

    def _check_loop_arguments(self, epochs: Any, initial_epoch: Any, verbose: Any, validation_freq: Any,
                              class_weight: Any) -> None:
        check.positive_int("epochs", epochs)
        check.non_negative_int("initial_epoch", initial_epoch)
        resolve_verbose(verbose)
        check.validation_freq(validation_freq)
        check.class_weight(class_weight)

    def _fit(self, task: Task, train: Adapter, validation: Adapter | None, *, epochs: int, initial_epoch: int,
             verbose: int | str, callbacks: Iterable[Callback] | None, validation_freq: int | Sequence[int],
             batch_size: int | None, samples: int | None, data: dict[str, Any]) -> History:
        check_optimizer(self.module, self.optimizer)  # type: ignore[arg-type]  # again: it may have changed since
        state = TrainingState(self, epochs=epochs)
        first_batches = None
        if initial_epoch < epochs:
            first_batches = prefetch(state.epoch_batches(train, initial_epoch))
            if first_batches is None:
                raise ValueError("The training data is empty: it yielded no batch.")
            first_batches = self._probe(task, first_batches, adapter=train)
            if isinstance(validation, ArrayAdapter):
                # In-memory validation is checked now too, not after a first epoch of training. A
                # stream is not: drawing from a one-shot iterator would lose that batch.
                self._probe(task, validation.epoch_batches(0), "validation_data", adapter=validation)
            first = next(first_batches)
            first_batches = _chain_first(first, first_batches)
            planned = None if train.steps is None else train.steps * (epochs - initial_epoch)
            self._steps.prepare(first, planned, validation is not None)  # type: ignore[union-attr]
        history = History()
        user_callbacks = _callback_list(callbacks)
        progress = progress_callback(resolve_verbose(verbose) if is_main_process() else 0)
        callback_list = CallbackList(([progress] if progress else []) + user_callbacks + [history])
        keys = task.log_keys() if task.built else ["loss"]
        do_validation = validation is not None
        params = {
            "epochs": epochs, "steps": train.steps, "batch_size": batch_size, "samples": samples,
            "initial_epoch": initial_epoch, "verbose": resolve_verbose(verbose), "do_validation": do_validation,
            "metrics": keys + ([f"val_{key}" for key in keys] if do_validation else []),
            **self._step_options.as_params(),
        }
        callback_list.set_model(self)
        callback_list.set_params(params)
        state.callbacks = user_callbacks + [history]
        state.backup = _backup_callback(user_callbacks)
        state.fingerprint = run_fingerprint(self.module, [self.optimizer], self._compile_options,  # type: ignore[list-item]
                                            trajectory_arguments(params, validation_freq, data), data)
        wants_batch_logs = CallbackList(user_callbacks).wants(*TRAIN_HOOKS)
        state.sync = self._cluster.fit_sync(wants_batch_logs) if self._cluster is not None else LOCAL
        plan = FitPlan(train, validation, epochs, initial_epoch, validation_freq, first_batches,
                       report_learning_rate=any(getattr(cb, "reports_learning_rate", False) for cb in user_callbacks),
                       sync=state.sync, state=state)
        self.history = history
        self.training_state = state
        holding = state.backup.hold() if state.backup is not None else contextlib.nullcontext()
        with self._exclusive("fit"), SignalGuard() as state.guard, holding:
            self.stop_training = False
            fit_loop(self, self._steps, task, plan, callback_list)  # type: ignore[arg-type]
        return history

    def _probe(self, task: Task, batches: Iterator[Batch], name: str = "x", adapter: Any = None) -> Iterator[Batch]:
        """Check the first batch of `name` against the outputs: shapes, value ranges, metric kinds.

        One forward pass in eval mode without gradients, so nothing (weights, buffers, RNG) changes.
        Then every target of `adapter` is checked against the losses (all at once if in memory).
        """
        first = next(batches)
        outputs = self._forward_first(first, name)
        if not task.built:
            task.build(outputs, first.y)
        task.check(outputs, first.y)
        if adapter is not None:
            arm_target_checks(task, outputs, first.y, adapter, "" if name == "x" else "validation data: ")
        return _chain_first(first, batches)

    def _forward_first(self, batch: Batch, name: str) -> Tree:
        """The module's output on a first batch, in eval mode without gradients (no state changes).

        An error raised inside torch itself (wrong shape or dtype for a layer) becomes a ValueError
        naming the argument the batch came from; an error from the user's own code passes unchanged.
        """
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                return call_module(self.module, batch.x)
        except (RuntimeError, TypeError, IndexError) as error:
            if not _raised_inside_torch(error):
                raise
            leaves = ", ".join(f"shape {tuple(t.shape)} {t.dtype}" for t in flatten(batch.x))
            raise ValueError(
                f"The module cannot run on the first batch of `{name}` ({leaves}): {error}. Check that `{name}` "
                "has the shape and dtype the module expects."
            ) from error
        finally:
            self.module.train(was_training)

    # -- evaluate / predict ---------------------------------------------------------------------

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Iterable[Callback] | None = None,
    ) -> dict[str, float]:
        """Loss and metrics over all of `x`, as exact per-sample means: `{"loss": ..., <metric>: ...}`."""
        task = self._require_compiled("evaluate")
        adapter, _ = self._eval_adapter(x, y, sample_weight, batch_size, steps, verbose, targets=True)
        check_data([(adapter, "")], check_finite=False)  # NaN in, NaN out: evaluating it is no error
        batches = prefetch(adapter.epoch_batches(0))
        if batches is None:
            raise ValueError("`x` is empty: it yielded no batch.")
        batches = self._probe(task, batches, adapter=adapter)
        callback_list = self._side_callbacks(callbacks, adapter)
        sync = self._cluster.eval_sync() if self._cluster is not None else LOCAL
        logs = evaluate_pass(self.module, self._steps, task, batches, callback_list, sync)  # type: ignore[arg-type]
        if resolve_verbose(verbose) > 0 and is_main_process():
            print(format_logs(logs), flush=True)
        return logs

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        steps: int | None = None,
        callbacks: Iterable[Callback] | None = None,
    ) -> Tree:
        """The module's outputs for every sample, in order, in eval mode without gradients (on the CPU).

        Under torch.distributed each rank predicts its block of samples and every rank returns all of them.
        """
        adapter, sharded = self._eval_adapter(x, None, None, batch_size, steps, verbose, targets=False)
        batches = prefetch(adapter.epoch_batches(0))
        if batches is None:
            raise ValueError("`x` is empty: it yielded no batch.")
        first = next(batches)
        self._forward_first(first, "x")
        batches = _chain_first(first, batches)
        step = self._steps.predict if self._steps is not None else partial(predict_step, self.module)
        outputs = predict_pass(self.module, step, batches, self._side_callbacks(callbacks, adapter))
        return self._cluster.gather(outputs) if self._cluster is not None and sharded else outputs

    def _eval_adapter(self, x: Any, y: Any, sample_weight: Any, batch_size: int | None, steps: int | None,
                      verbose: Any, *, targets: bool) -> tuple[Adapter, bool]:
        """The adapter for `evaluate`/`predict`, and whether it reads only this rank's part of `x`."""
        resolve_verbose(verbose)
        check.positive_int("batch_size", batch_size, allow_none=True)
        check.positive_int("steps", steps, allow_none=True)
        sharded = False
        if self._cluster is not None and is_dataset(x):
            x, sharded = self._cluster.shard_dataset(x, train=False)
        adapter = make_eval_data(x, y, sample_weight=sample_weight, batch_size=batch_size or _DEFAULT_BATCH_SIZE,
                                 steps=steps, device=self.device, float_dtype=float_dtype_of(self.module),
                                 targets=targets)
        if self._cluster is not None and not is_dataset(x):
            adapter, sharded = self._cluster.shard_arrays(adapter, train=False)
        return adapter, sharded

    def _local_arrays(self, adapter: Any, *, train: bool) -> Any:
        """This rank's part of in-memory data under torch.distributed; `adapter` itself otherwise."""
        return adapter if self._cluster is None else self._cluster.shard_arrays(adapter, train=train)[0]

    def _local_dataset(self, data: Any, *, train: bool) -> Any:
        """A DataLoader rebuilt to read this rank's part under torch.distributed; `data` otherwise."""
        if self._cluster is None or data is None or not is_dataset(data):
            return data
        return self._cluster.shard_dataset(data, train=train)[0]

    def _side_callbacks(self, callbacks: Iterable[Callback] | None, adapter: Adapter) -> CallbackList:
        callback_list = CallbackList(_callback_list(callbacks))
        callback_list.set_model(self)
        callback_list.set_params({"steps": adapter.steps, "verbose": 0})
        return callback_list

    # -- single batches -------------------------------------------------------------------------

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: Mapping[int, float] | None = None) -> dict[str, float]:
        """One optimizer update on one batch; returns that batch's loss and metrics (before the update)."""
        task = self._require_compiled("train_on_batch")
        check.class_weight(class_weight)
        adapter = make_fit_data(
            x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=2**62, shuffle=False,
            validation_split=0.0, validation_data=None, validation_batch_size=1, steps_per_epoch=None,
            validation_steps=None, device=self.device, float_dtype=float_dtype_of(self.module),
        )[0]
        check_data([(adapter, "")], check_finite=False)  # a hand-written loop's own business, as in evaluate
        batches = self._probe(task, iter(adapter.epoch_batches(0)), adapter=adapter)
        batch = next(batches)
        self.module.train()
        values = self._steps.train(batch)  # type: ignore[union-attr]
        self._steps.flush()  # type: ignore[union-attr]  # one update, even mid-accumulation
        return dict(zip(task.log_keys(), values.tolist()))

    def find_lr(self, x: Any, y: Any, **options: Any) -> LRFinderResult:
        """An exponential learning-rate sweep that leaves the model as it was; see `epochal.tune.lr_finder.find_lr`."""
        from epochal.tune.lr_finder import find_lr

        return find_lr(self, x, y, **options)

    # -- saving ---------------------------------------------------------------------------------

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the module's weights and buffers to a safetensors file, atomically (rank 0 only when distributed)."""
        self._on_main_then_wait(lambda: saving.save_weights(self.module, path))

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by `save_weights` (or `save`); another architecture is a ValueError."""
        saving.load_weights(self.module, path)

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        """Write weights and optimizer state (and plain `metadata`) to one file loadable without pickle.

        Under torch.distributed rank 0 writes and every rank returns once the file is there.
        """
        optimizers = [self.optimizer] if self.optimizer is not None else []
        fingerprint = run_fingerprint(self.module, optimizers, self._compile_options, {}, {}).value()
        self._on_main_then_wait(lambda: saving.save_checkpoint(path, self.module, self.optimizer, metadata,
                                                               fingerprint=fingerprint))

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore a `save` (or ModelCheckpoint) file: weights, and optimizer state if compiled; returns its metadata."""
        return saving.load_checkpoint(path, self.module, self.optimizer)

    # -- helpers --------------------------------------------------------------------------------

    def _on_main_then_wait(self, write: Any) -> None:
        """`write()` in one process only (rank 0 when distributed), the other ranks waiting for it."""
        if self._cluster is None:
            write()
            return
        if self._cluster.is_main:
            write()
        barrier()

    def _require_compiled(self, verb: str) -> Task:
        if self._task is None or self.optimizer is None:
            raise RuntimeError(f"You must call `compile()` before `{verb}()`.")
        return self._task

    def _require_idle(self, verb: str) -> None:
        # Checked first, so a refused nested call touches nothing (model.history, callbacks, the RNG).
        if self._running:
            raise RuntimeError(f"`{verb}()` was called while a `fit()` on this model is running.")

    @contextmanager
    def _exclusive(self, verb: str) -> Iterator[None]:
        self._require_idle(verb)
        self._running = True
        try:
            yield
        finally:
            self._running = False


def _refuse_validation_split(validation_split: Any, dataset: Any) -> None:
    if validation_split:
        raise ValueError(
            "`validation_split` is only supported for arrays, not datasets: pass `validation_data`. "
            f"Received: validation_split={validation_split!r} with x of type {type(dataset).__name__}"
        )


def _chain_first(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest


def _callback_list(callbacks: Iterable[Callback] | None) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise TypeError("`callbacks` must be a list of Callback objects. Received: a single Callback; wrap it in a list.")
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, bytes, Mapping, torch.Tensor)):
        raise TypeError(f"`callbacks` must be a list of Callback objects. Received: callbacks={callbacks!r}")
    result = list(callbacks)
    for callback in result:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"Every entry of `callbacks` must be an epochal.callbacks.Callback. Received: {type(callback).__name__}"
            )
    return result


def _backup_callback(callbacks: list[Callback]) -> BackupAndRestore | None:
    """The run's BackupAndRestore, which the loop calls at its safe points (at most one per run)."""
    backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError(f"`callbacks` may hold at most one BackupAndRestore. Received: {len(backups)}")
    return backups[0] if backups else None


def _raised_inside_torch(error: BaseException) -> bool:
    """Whether the innermost frame of `error` is torch's own code (not the user's module)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_TORCH_DIR)


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
