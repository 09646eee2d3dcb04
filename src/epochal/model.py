"""Model: the facade users touch — compile once, then fit, evaluate and predict. Thin: it checks
arguments, builds data adapters and callbacks, and hands over to the loop."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator

import torch

from epochal import validation as check
from epochal.callbacks.callback import Callback, CallbackList
from epochal.callbacks.progress import format_logs, progress_callback, resolve_verbose
from epochal.data import (Adapter, Batch, is_dataset, make_dataset_fit_data, make_eval_data, make_fit_data)
from epochal.data.structure import Tree, call_module, float_dtype_of, to_device, to_tensors
from epochal.history import History
from epochal.logs import Logs
from epochal.loop import FitPlan, evaluate_pass, fit_loop, predict_pass, prefetch
from epochal.optimizers import make_optimizer
from epochal.step_options import StepOptions, make_step_options
from epochal.steps import StepFunctions, make_steps, predict_step
from epochal.task import Task

_DEFAULT_BATCH_SIZE = 32


class Model:
    """Wraps a `torch.nn.Module` (not copied: `model.module` is it) with Keras's training API.

    Args:
        module: The network to train.
        device: Where to train. Defaults to CUDA when available, else CPU.

    Example:
        >>> import torch, epochal
        >>> model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> history = model.fit(torch.ones(8, 3), torch.zeros(8, 1), epochs=2, verbose=0)
        >>> history.epoch
        [0, 1]
    """

    def __init__(self, module: torch.nn.Module, device: str | torch.device | None = None) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module. Received: {type(module).__name__}")
        self.module = module
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        module.to(self.device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.stop_training = False
        self.history: History | None = None
        self._task: Task | None = None
        self._steps: StepFunctions | None = None
        self._step_options = StepOptions()
        self._running = False

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
                cannot be compiled runs eagerly after one warning. See `epochal.compiled`.
                Defaults to `False`.
            steps_per_execution: Batches stacked into one call of the train step (one graph when
                compiled); batch callbacks then fire once per call, with the index of its last batch.
                Defaults to `1`.
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
            jit_compile=jit_compile, steps_per_execution=steps_per_execution, precision=precision,
            clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )
        self._task = Task(loss, metrics, loss_weights)
        self.optimizer = make_optimizer(optimizer, self.module.parameters())
        self._step_options = options
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
    ) -> History:
        """Train for epochs `initial_epoch .. epochs-1` and return the History (Keras semantics)."""
        task = self._require_compiled("fit")
        if is_dataset(x):
            if validation_split:
                raise ValueError(
                    "`validation_split` is only supported for arrays, not datasets: pass `validation_data`. "
                    f"Received: validation_split={validation_split!r} with x of type {type(x).__name__}"
                )
            if y is not None:
                raise ValueError("`y` must be None when `x` is a dataset: it yields (x, y) batches itself.")
            return self.fit_dataset(
                x, epochs=epochs, batches_per_epoch=steps_per_epoch, validation_data=validation_data,
                validation_batches=validation_steps, verbose=verbose, callbacks=callbacks,
                class_weight=class_weight, initial_epoch=initial_epoch,
                validation_batch_size=validation_batch_size, validation_freq=validation_freq,
            )
        batch_size = _DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        self._check_loop_arguments(epochs, initial_epoch, verbose, validation_freq, class_weight)
        check.positive_int("batch_size", batch_size)
        check.positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
        check.positive_int("validation_steps", validation_steps, allow_none=True)
        check.positive_int("validation_batch_size", validation_batch_size, allow_none=True)
        check.validation_split(validation_split)
        train, validation, samples = make_fit_data(
            x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=batch_size,
            shuffle=shuffle, validation_split=validation_split, validation_data=validation_data,
            validation_batch_size=validation_batch_size or batch_size, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, device=self.device, float_dtype=float_dtype_of(self.module),
        )
        return self._fit(task, train, validation, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose,
                         callbacks=callbacks, validation_freq=validation_freq, batch_size=batch_size,
                         samples=samples)

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
    ) -> History:
        """Train on streaming data: a DataLoader, re-iterable or iterator of `(x, y[, w])` batches (TF.js)."""
        task = self._require_compiled("fit_dataset")
        if not is_dataset(dataset):
            raise TypeError(
                "`dataset` must be a DataLoader, an iterable or an iterator of (x, y) batches. "
                f"Received: {type(dataset).__name__}. For arrays use fit(x, y)."
            )
        self._check_loop_arguments(epochs, initial_epoch, verbose, validation_freq, class_weight)
        check.positive_int("batches_per_epoch", batches_per_epoch, allow_none=True)
        check.positive_int("validation_batches", validation_batches, allow_none=True)
        check.positive_int("validation_batch_size", validation_batch_size, allow_none=True)
        train, validation = make_dataset_fit_data(
            dataset, batches_per_epoch=batches_per_epoch, validation_data=validation_data,
            validation_batches=validation_batches, validation_batch_size=validation_batch_size or _DEFAULT_BATCH_SIZE,
            class_weight=class_weight, device=self.device, float_dtype=float_dtype_of(self.module),
        )
        return self._fit(task, train, validation, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose,
                         callbacks=callbacks, validation_freq=validation_freq, batch_size=None, samples=None)

    def _check_loop_arguments(self, epochs: Any, initial_epoch: Any, verbose: Any, validation_freq: Any,
                              class_weight: Any) -> None:
        check.positive_int("epochs", epochs)
        check.non_negative_int("initial_epoch", initial_epoch)
        resolve_verbose(verbose)
        check.validation_freq(validation_freq)
        check.class_weight(class_weight)

    def _fit(self, task: Task, train: Adapter, validation: Adapter | None, *, epochs: int, initial_epoch: int,
             verbose: int | str, callbacks: Iterable[Callback] | None, validation_freq: int | Sequence[int],
             batch_size: int | None, samples: int | None) -> History:
        first_batches = None
        if initial_epoch < epochs:
            first_batches = prefetch(train.epoch_batches(initial_epoch))
            if first_batches is None:
                raise ValueError("The training data is empty: it yielded no batch.")
            first_batches = self._probe(task, first_batches)
            first = next(first_batches)
            first_batches = _chain_first(first, first_batches)
            planned = None if train.steps is None else train.steps * (epochs - initial_epoch)
            self._steps.prepare(first, planned, validation is not None)  # type: ignore[union-attr]
        history = History()
        user_callbacks = _callback_list(callbacks)
        progress = progress_callback(resolve_verbose(verbose))
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
        plan = FitPlan(train, validation, epochs, initial_epoch, validation_freq, first_batches,
                       report_learning_rate=any(getattr(cb, "reports_learning_rate", False) for cb in user_callbacks))
        self.history = history
        with self._exclusive("fit"):
            self.stop_training = False
            fit_loop(self, self._steps, task, plan, callback_list)  # type: ignore[arg-type]
        return history

    def _probe(self, task: Task, batches: Iterator[Batch]) -> Iterator[Batch]:
        """Check the first batch against the outputs before training: shapes, value ranges, metric kinds.

        One forward pass in eval mode without gradients, so nothing (weights, buffers, RNG) changes.
        """
        first = next(batches)
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                outputs = call_module(self.module, first.x)
        finally:
            self.module.train(was_training)
        if not task.built:
            task.build(outputs, first.y)
        task.check(outputs, first.y)
        return _chain_first(first, batches)

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
        adapter = self._eval_adapter(x, y, sample_weight, batch_size, steps, verbose, targets=True)
        batches = prefetch(adapter.epoch_batches(0))
        if batches is None:
            raise ValueError("`x` is empty: it yielded no batch.")
        batches = self._probe(task, batches)
        callback_list = self._side_callbacks(callbacks, adapter)
        logs = evaluate_pass(self.module, self._steps, task, batches, callback_list)  # type: ignore[arg-type]
        if resolve_verbose(verbose) > 0:
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
        """The module's outputs for every sample, in order, in eval mode without gradients (on the CPU)."""
        adapter = self._eval_adapter(x, None, None, batch_size, steps, verbose, targets=False)
        batches = prefetch(adapter.epoch_batches(0))
        if batches is None:
            raise ValueError("`x` is empty: it yielded no batch.")
        step = self._steps.predict if self._steps is not None else partial(predict_step, self.module)
        return predict_pass(self.module, step, batches, self._side_callbacks(callbacks, adapter))

    def _eval_adapter(self, x: Any, y: Any, sample_weight: Any, batch_size: int | None, steps: int | None,
                      verbose: Any, *, targets: bool) -> Adapter:
        resolve_verbose(verbose)
        check.positive_int("batch_size", batch_size, allow_none=True)
        check.positive_int("steps", steps, allow_none=True)
        return make_eval_data(x, y, sample_weight=sample_weight, batch_size=batch_size or _DEFAULT_BATCH_SIZE,
                              steps=steps, device=self.device, float_dtype=float_dtype_of(self.module),
                              targets=targets)

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
        batches = self._probe(task, iter(adapter.epoch_batches(0)))
        batch = next(batches)
        self.module.train()
        values = self._steps.train(batch)  # type: ignore[union-attr]
        self._steps.flush()  # type: ignore[union-attr]  # one update, even mid-accumulation
        return dict(zip(task.log_keys(), values.tolist()))

    # -- helpers --------------------------------------------------------------------------------

    def _require_compiled(self, verb: str) -> Task:
        if self._task is None or self.optimizer is None:
            raise RuntimeError(f"You must call `compile()` before `{verb}()`.")
        return self._task

    @contextmanager
    def _exclusive(self, verb: str) -> Iterator[None]:
        if self._running:
            raise RuntimeError(f"`{verb}()` was called while a `fit()` on this model is running.")
        self._running = True
        try:
            yield
        finally:
            self._running = False


def _chain_first(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest


def _callback_list(callbacks: Iterable[Callback] | None) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise TypeError("`callbacks` must be a list of Callback objects. Received: a single Callback; wrap it in a list.")
    result = list(callbacks)
    for callback in result:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"Every entry of `callbacks` must be an epochal.callbacks.Callback. Received: {type(callback).__name__}"
            )
    return result
