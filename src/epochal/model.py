"""Model: the facade users see — compile once, then fit, evaluate and predict — and the Keras 3 steps a
subclass may override (`compute_loss`, `train_step`, `test_step`, `predict_step`). Thin: it checks
arguments and hands over to the training package and the step pipeline."""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from epochal import saving
from epochal.parallel import sharded_state
from epochal.callbacks.callback import Callback
from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.history import History
from epochal.callbacks.progress import format_logs, resolve_verbose
from epochal.data import Adapter, Batch, is_dataset
from epochal.data.structure import Tree, call_module, concatenate, float_dtype_of, to_device, to_tensors
from epochal.optimizers import make_optimizers
from epochal.parallel.cluster import Distributed, connect
from epochal.parallel.process import barrier, is_main_process
from epochal.parallel.strategy import SingleDevice, Strategy
from epochal.parallel.sync import LOCAL
from epochal.step.compiled import compile_forward
from epochal.predictions import Predictions, write_predictions
from epochal.step.activation_checkpointing import checkpointed_names
from epochal.step.gradients import Gradients
from epochal.step.options import StepOptions, make_step_options
from epochal.step.pipeline import ModelSteps, StepData, StepPipeline
from epochal.step.values import StepValues
from epochal.task import Task
from epochal.training import arguments as check
from epochal.training.fingerprint import run_fingerprint
from epochal.training.fit import FitSetup, callback_list, run_fit
from epochal.training.inputs import FitData, Inputs
from epochal.training.loop import evaluate_pass, predict_batches, prefetch
from epochal.training.setup_checks import check_optimizers
from epochal.training.state import TrainingState
from epochal.training.target_checks import arm_target_checks

if TYPE_CHECKING:
    from epochal.analysis.interpretation import Interpretation
    from epochal.export import ExportResult
    from epochal.tune.lr_finder import LRFinderResult

_DEFAULT_BATCH_SIZE = 32


class Model:
    """Wraps a `torch.nn.Module` (not copied: `model.module` is it) with Keras's training API.

    Subclass it to change what a step does, as in Keras 3: override `compute_loss` to add a term (a
    VAE's KL divergence, a regulariser), `train_step` for several losses or optimizers (a GAN,
    distillation), `test_step` and `predict_step` likewise. Inside `train_step`, `self.backward(loss)`
    and `self.apply_gradients()` carry every compile option — precision, gradient accumulation,
    clipping — and the distribution strategy's gradient sync.

    Under `torchrun` the same script trains data-parallel; see `epochal.parallel`. With
    `distributed="fsdp"` the module is sharded over the processes (FSDP2) when the Model is made: build
    optimizers after that, from `model.module`.

    Args:
        module: The network to train.
        device: Where to train. Defaults to CUDA when available (`cuda:LOCAL_RANK` under torchrun),
            else CPU.
        distributed: `None` trains data-parallel (DDP's semantics) when launched by torchrun or when a
            process group is initialised; `True` or `"ddp"` requires that; `"fsdp"` or an
            `epochal.parallel.FSDP(...)` shards the module's parameters, gradients and optimizer state
            over the processes (see `epochal.parallel.fully_sharded`); `False` trains each process on
            its own. Defaults to `None`.

    Example:
        >>> import torch, epochal
        >>> model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> history = model.fit(torch.ones(8, 3), torch.zeros(8, 1), epochs=2, verbose=0)
        >>> history.epoch
        [0, 1]
    """

    def __init__(self, module: torch.nn.Module, device: str | torch.device | None = None, *,
                 distributed: Distributed = None) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module. Received: {type(module).__name__}")
        self.module = module
        self._cluster = connect(distributed)
        if self._cluster is not None:
            self.device = self._cluster.place(device)
        else:
            self.device = torch.device(device) if device is not None else torch.device(
                "cuda" if torch.cuda.is_available() else "cpu")
        self._strategy: Strategy = self._cluster.strategy if self._cluster is not None else SingleDevice()
        self._strategy.distribute(module, self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.stop_training = False
        self.history: History | None = None
        self._task: Task | None = None
        self._pipeline: StepPipeline | None = None
        self._step_options = StepOptions()
        self._compile_options: dict[str, Any] = {}  # as given, for the run fingerprint
        self._running = False
        self.training_state: TrainingState | None = None  # where the last `fit` is or stopped
        self._train_data: Adapter | None = None  # the last `fit`'s training data (`training_batches`)

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer `compile` built (None before); with several, use `optimizers[name]`."""
        if len(self.optimizers) > 1:
            raise AttributeError(f"This model has several optimizers ({', '.join(self.optimizers)}): use "
                                 "`model.optimizers[name]`.")
        return next(iter(self.optimizers.values()), None)

    # -- compile --------------------------------------------------------------------------------

    def compile(
        self,
        optimizer: str | torch.optim.Optimizer | Mapping[str, Any] | Any = "rmsprop",
        loss: Any = None,
        metrics: Sequence[Any] | Mapping[str, Any] | None = None,
        loss_weights: Sequence[float] | Mapping[str, float] | None = None,
        *,
        weighted_metrics: Sequence[Any] | Mapping[str, Any] | None = None,
        jit_compile: bool | str = False,
        steps_per_execution: int = 1,
        cuda_graphs: bool = False,
        precision: str = "32",
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int = 1,
        checkpoint_modules: Sequence[torch.nn.Module | str | type[torch.nn.Module]] | None = None,
    ) -> None:
        """Choose the optimizer(s), loss(es) and metrics, and how each step runs; calling it again rebuilds.

        Args:
            optimizer: A Keras name (Keras 3's optimizer, `epochal.optimizers`), an Optimizer, or a
                callable params -> Optimizer; or a dict of named optimizers for a custom `train_step`,
                each an Optimizer built on part of the module or a pair `(name or callable, submodule)`.
                Defaults to `"rmsprop"`.
            loss: A Keras loss name, a `epochal.losses.Loss`, a callable (y_true, y_pred) or a torch
                loss module; a list or dict of them for several outputs. May be None when the model
                overrides `compute_loss` or `train_step`. Defaults to `None`.
            metrics: Metric names, torchmetrics Metrics or callables; a dict or list of lists per output.
                Defaults to `None`.
            loss_weights: Weights of each output's loss in the total. Defaults to `None` (all 1).
            weighted_metrics: Metrics weighted by `sample_weight` and `class_weight` (Keras): a
                per-sample metric becomes `sum(w * v) / sum(w)` over the epoch; a metric also in
                `metrics` is logged as `weighted_<name>`. Defaults to `None`.
            jit_compile: `True` compiles the whole train step (forward, loss, backward, optimizer
                update) and the test step into one graph each, the model's own steps included;
                `"auto"` does so only when a fit plans enough batches to repay the compile time (20,000
                on CPU, 2,000 on CUDA); a step that cannot be compiled runs eagerly after one warning.
                Under FSDP, `True` compiles each sharded unit's forward instead. See
                `epochal.step.compiled`. Defaults to `False`.
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
            global_clipnorm: Clip all of an optimizer's gradients together, as
                `torch.nn.utils.clip_grad_norm_`. Defaults to `None`.
            gradient_accumulation_steps: Batches whose gradients are summed (each loss divided by
                it) before one optimizer update; an epoch's last, partial group is applied too.
                Defaults to `1`.
            checkpoint_modules: Submodules whose activations are recomputed in the backward instead of
                kept (activation checkpointing): the submodules themselves, their names in
                `module.named_modules()`, or module classes (every submodule of the class, e.g. a
                transformer's block). Less memory, the same results, one more forward of them per step.
                See `epochal.step.activation_checkpointing`. Defaults to `None`.
        """
        options = make_step_options(
            jit_compile=jit_compile, steps_per_execution=steps_per_execution, cuda_graphs=cuda_graphs,
            precision=precision,
            clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
            gradient_accumulation_steps=gradient_accumulation_steps,
            checkpoint_modules=checkpointed_names(self.module, checkpoint_modules),
        )
        if loss is None and not self._computes_its_own_loss():
            raise ValueError("`loss` is required: pass a loss name, a callable or a torch loss module (or override "
                             "`compute_loss` or `train_step` in a Model subclass).")
        task = Task(loss, metrics, loss_weights, weighted_metrics)
        optimizers = make_optimizers(optimizer, self.module)
        check_optimizers(self.module, optimizers)
        self._strategy.setup(self.module)
        steps = ModelSteps(self.train_step, self.test_step, self.predict_step,
                           custom_train=type(self).train_step is not Model.train_step)
        step_options = self._compile_units(options)
        gradients = Gradients(optimizers, step_options, self.device, self._strategy)
        pipeline = StepPipeline(steps, gradients, step_options, self.module, self.device, self._strategy)
        pipeline.compiled.precheck = self._uncompilable_reason
        self._task, self.optimizers, self._step_options, self._pipeline = task, optimizers, options, pipeline
        # Checkpointing does not change the results, so a run may resume with it switched on (after running
        # out of memory) or off: it stays out of the run fingerprint.
        self._compile_options = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights,
                                 "weighted_metrics": weighted_metrics, **options.as_params()}
        del self._compile_options["checkpoint_modules"]

    def _compile_units(self, options: StepOptions) -> StepOptions:
        """The options the step runs with: under FSDP, `jit_compile=True` compiles each unit's forward and the
        step around them runs eagerly (FSDP's hooks cannot be traced into a whole-step graph)."""
        compile = partial(compile_forward, device=self.device) if options.jit_compile is True else None
        if self._strategy.compile_units(compile):
            return dataclasses.replace(options, jit_compile=False)
        return options

    def _computes_its_own_loss(self) -> bool:
        return any(getattr(type(self), name) is not getattr(Model, name) for name in ("compute_loss", "train_step"))

    def _uncompilable_reason(self) -> str | None:
        if self._strategy.sharded:
            return ("FSDP's all-gathers and reduce-scatters run in hooks that a whole-step graph cannot hold "
                    "(jit_compile=True compiles each unit's forward instead)")
        if self._task is not None and self._task.stateful():
            return "metrics computed over the whole epoch (precision, AUC, torchmetrics...) keep state outside any graph"
        return None

    # -- the steps a subclass may override (Keras 3) ---------------------------------------------

    def __call__(self, x: Tree) -> Tree:
        """The module's outputs for `x`: `module(x)`, `module(*x)` for a tuple, `module(**x)` for a dict."""
        return call_module(self.module, x)

    def compute_loss(self, x: Tree, y: Tree | None, y_pred: Tree,
                     sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's scalar loss. The default applies the compiled loss(es) and `loss_weights`.

        Override it to add terms; the default train and test steps call it, so both change.

        Example:
            >>> class WithL2(Model):
            ...     def compute_loss(self, x, y, y_pred, sample_weight=None):
            ...         penalty = sum((p ** 2).sum() for p in self.module.parameters())
            ...         return super().compute_loss(x, y, y_pred, sample_weight) + 1e-4 * penalty
        """
        return self._require_compiled("compute_loss").loss(y, y_pred, sample_weight)

    def compute_metrics(self, x: Tree, y: Tree | None, y_pred: Tree,
                        sample_weight: torch.Tensor | None = None) -> StepValues:
        """The compiled metrics of a batch (and each output's loss, for several outputs), as log values."""
        counted = self._pipeline is None or self._pipeline.batch_counts
        keys, values = self._require_compiled("compute_metrics").logs(y, y_pred, sample_weight, counted=counted)
        return StepValues(keys, values)

    def train_step(self, data: StepData) -> Mapping[str, torch.Tensor]:
        """One training batch `data = (x, y, sample_weight)` -> its log values (name -> scalar tensor).

        The default: forward, `compute_loss`, `backward`, `apply_gradients`, then the loss and the
        compiled metrics of this forward pass (before the update). A override returns its own logs;
        epoch logs are their exact sample-weighted means.
        """
        x, y, sample_weight = data
        y_pred = self(x)
        loss = self.compute_loss(x, y, y_pred, sample_weight)
        self.backward(loss)
        self.apply_gradients()
        return _with_loss(loss, self.compute_metrics(x, y, y_pred, sample_weight))

    def test_step(self, data: StepData) -> Mapping[str, torch.Tensor]:
        """One evaluation batch `data = (x, y, sample_weight)` -> its log values (eval mode, no gradients)."""
        x, y, sample_weight = data
        y_pred = self(x)
        loss = self.compute_loss(x, y, y_pred, sample_weight)
        return _with_loss(loss, self.compute_metrics(x, y, y_pred, sample_weight))

    def predict_step(self, data: StepData) -> Tree:
        """One prediction batch `data = (x, None, None)` -> the outputs `predict` joins (eval mode, no gradients)."""
        return self(data[0])

    def backward(self, loss: torch.Tensor, optimizer: str | None = None) -> None:
        """Gradients of `loss` for `optimizer`'s parameters (the only optimizer when None), as the compile
        options ask: scaled for gradient accumulation, float16 loss scaling and this rank's share of the
        global batch. Call it once per `apply_gradients`."""
        self._require_pipeline("backward").gradients.backward(loss, optimizer)

    def apply_gradients(self, optimizer: str | None = None) -> None:
        """Update `optimizer` (the only one when None) from the gradients of the last `backward`: synced
        across ranks, unscaled, clipped; while accumulating, only every k-th call updates."""
        self._require_pipeline("apply_gradients").gradients.apply(optimizer)

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
        *,
        validation_every: int | None = None,
        max_steps: int | None = None,
        max_time: float | datetime.timedelta | None = None,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for epochs `initial_epoch .. epochs-1` and return the History (Keras semantics).

        The data is checked whole before training (`epochal.data.checks`): NaN or infinite values are
        an error unless `check_finite=False`; negative or misshapen weights and targets the loss
        cannot read always are. `validation_data` may be a dict of named sets, `{"clean": (x, y), ...}`,
        logged as `val_clean_loss`, ... (`epochal.data.validation_sets`).

        The keyword-only arguments control training by steps (training batches; see
        `epochal.training.step_control`): `validation_every=N` also validates after every N-th batch
        (`History.validation_steps`/`validation_history`, `on_validation_end(step, logs)`); `max_steps`
        stops after that many batches, closing the epoch; `max_time` (seconds or a `timedelta`) stops at
        a batch boundary once the budget is spent, leaving the epoch open with a backup written (with
        `BackupAndRestore`) so the same `fit` run again continues exactly.

        `resume_from` forks another run: a `BackupAndRestore` backup file, a backup folder (its newest)
        or a full ModelCheckpoint file. The fork continues that run — its weights, optimizer state,
        callbacks' state, History, random generators and position — with this call's and `compile`'s
        settings wherever they differ from the parent's (learning rate, batch size, epochs, callbacks,
        clipping); with none changed it repeats the parent bit for bit. See `epochal.training.fork`.
        """
        self._require_idle("fit")
        self._require_compiled("fit")
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
                check_finite=check_finite, validation_every=validation_every, max_steps=max_steps, max_time=max_time,
                resume_from=resume_from,
            )
        batch_size = _DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        limits = self._check_loop_arguments(epochs, initial_epoch, verbose, validation_freq, class_weight,
                                            validation_every, max_steps, max_time)
        check.positive_int("batch_size", batch_size)
        check.positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
        check.positive_int("validation_steps", validation_steps, allow_none=True)
        check.positive_int("validation_batch_size", validation_batch_size, allow_none=True)
        check.validation_split(validation_split)
        data = self._inputs().fit_arrays(
            x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=batch_size, shuffle=shuffle,
            validation_split=validation_split, validation_data=validation_data,
            validation_batch_size=validation_batch_size or batch_size, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, gather_batches=self._step_options.steps_per_execution,
            check_finite=check_finite,
        )
        return self._fit(data, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose, callbacks=callbacks,
                         validation_freq=validation_freq, batch_size=batch_size, resume_from=resume_from, **limits)

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
        validation_every: int | None = None,
        max_steps: int | None = None,
        max_time: float | datetime.timedelta | None = None,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train on streaming data: a DataLoader, re-iterable or iterator of `(x, y[, w])` batches (TF.js).

        `validation_split` is accepted only to refuse it with a clear error (SPEC): a stream has no tail.
        Each batch is checked on the host before it reaches the step (`check_finite` as in `fit`);
        `validation_data` (named sets too), `validation_every`, `max_steps`, `max_time` and `resume_from`
        are as in `fit`.
        """
        self._require_idle("fit_dataset")
        self._require_compiled("fit_dataset")
        if not is_dataset(dataset):
            raise TypeError(
                "`dataset` must be a DataLoader, an iterable or an iterator of (x, y) batches. "
                f"Received: {type(dataset).__name__}. For arrays use fit(x, y)."
            )
        _refuse_validation_split(validation_split, dataset)
        limits = self._check_loop_arguments(epochs, initial_epoch, verbose, validation_freq, class_weight,
                                            validation_every, max_steps, max_time)
        check.positive_int("batches_per_epoch", batches_per_epoch, allow_none=True)
        check.positive_int("validation_batches", validation_batches, allow_none=True)
        check.positive_int("validation_batch_size", validation_batch_size, allow_none=True)
        data = self._inputs().fit_stream(
            dataset, batches_per_epoch=batches_per_epoch, validation_data=validation_data,
            validation_batches=validation_batches, validation_batch_size=validation_batch_size or _DEFAULT_BATCH_SIZE,
            class_weight=class_weight, check_finite=check_finite,
        )
        return self._fit(data, epochs=epochs, initial_epoch=initial_epoch, verbose=verbose, callbacks=callbacks,
                         validation_freq=validation_freq, batch_size=None, resume_from=resume_from, **limits)

    def _check_loop_arguments(self, epochs: Any, initial_epoch: Any, verbose: Any, validation_freq: Any,
                              class_weight: Any, validation_every: Any, max_steps: Any,
                              max_time: Any) -> dict[str, Any]:
        """Checks `fit`'s loop arguments; returns the step-based ones as `run_fit` takes them."""
        check.positive_int("epochs", epochs)
        check.non_negative_int("initial_epoch", initial_epoch)
        resolve_verbose(verbose)
        check.validation_freq(validation_freq)
        check.class_weight(class_weight)
        check.positive_int("validation_every", validation_every, allow_none=True)
        check.positive_int("max_steps", max_steps, allow_none=True)
        return {"validation_every": validation_every, "max_steps": max_steps, "max_time": check.max_time(max_time)}

    def _fit(self, data: FitData, **arguments: Any) -> History:
        setup = FitSetup(self, self._require_pipeline("fit"), self._task, self._step_options.as_params(),  # type: ignore[arg-type]
                         self._compile_options, attach=self._attach, exclusive=lambda: self._exclusive("fit"),
                         fit_sync=self._cluster.fit_sync if self._cluster is not None else None,
                         sharded=self._strategy.sharded)
        self._train_data = data.train
        return run_fit(setup, data, **arguments)[0]

    def _attach(self, history: History, state: TrainingState) -> None:
        self.history, self.training_state = history, state

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
        task.output_checks = [partial(arm_target_checks, task, adapter=adapter)]
        batches = _first_drawn(adapter)
        callbacks_ = self._side_callbacks(callbacks, adapter)
        sync = self._cluster.eval_sync() if self._cluster is not None else LOCAL
        pipeline = self._require_pipeline("evaluate")
        pipeline.prepare_inference(adapter.steps)
        logs = evaluate_pass(self.module, pipeline, task, batches, callbacks_, sync)
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
        *,
        stream: bool = False,
    ) -> Tree | Iterator[Tree]:
        """The predict step's outputs for every sample, in order, in eval mode without gradients (on the CPU).

        Under torch.distributed each rank predicts its block of samples and every rank returns all of them.
        With `stream=True` it returns a generator of each batch's outputs instead, computed as they are
        asked for and kept nowhere (on the CPU; eval mode and no_grad around each batch only), for
        predictions larger than memory — or see `predict_to`. Bad arguments and empty data are refused
        when `predict` is called, not when the stream is first read.
        """
        if not isinstance(stream, bool):
            raise TypeError(f"`stream` must be True or False. Received: stream={stream!r}")
        adapter, sharded = self._eval_adapter(x, None, None, batch_size, steps, verbose, targets=False)
        if stream and self._cluster is not None and sharded:
            raise ValueError(
                "`predict(stream=True)` cannot hand every process all the samples in order under torch.distributed: "
                "each process predicts its own block. Use `predict_to(path, x)`, where each process writes its "
                "block, or predict without `stream`.")
        outputs = self._predictions(adapter, callbacks, streamed=stream)
        if stream:
            return (to_device(batch, torch.device("cpu")) for batch in outputs)
        joined = concatenate(list(outputs))  # `_first_drawn` saw a batch
        return self._cluster.gather(joined) if self._cluster is not None and sharded else joined

    def predict_to(
        self,
        path: str | os.PathLike[str],
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        steps: int | None = None,
        callbacks: Iterable[Callback] | None = None,
        *,
        max_shard_size: float = 0.25,
    ) -> Predictions:
        """Predict `x` into the folder `path` as safetensors shards plus an index, holding one shard in memory
        at most, so predictions larger than memory work; returns a reader of them (`epochal.predictions`).

        Every file is written atomically and the index last: the folder always holds one complete
        prediction. Under torch.distributed each process writes its block's shards and rank 0 the index.

        Args:
            path: The folder to write into (created when missing).
            x: Inputs, as `predict` takes them.
            batch_size: Samples per batch. Defaults to `None` (32).
            verbose: As in `predict`. Defaults to `"auto"`.
            steps: Batches to predict. Defaults to `None` (all).
            callbacks: Callbacks for the predict hooks. Defaults to `None`.
            max_shard_size: Size in GB (2**30 bytes, Keras's unit) at which a shard is written; a larger
                batch is a shard alone. Defaults to `0.25`.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a folder path. Received: path={path!r}")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"`path` must be a folder, to hold the shards and their index. Received: {os.fspath(path)!r}, "
                             "which is a file")
        if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, (int, float)):
            raise TypeError(f"`max_shard_size` must be a number of GB. Received: max_shard_size={max_shard_size!r}")
        if not 0 < max_shard_size < float("inf"):
            raise ValueError(f"`max_shard_size` must be a positive number of GB. Received: max_shard_size={max_shard_size!r}")
        adapter, sharded = self._eval_adapter(x, None, None, batch_size, steps, verbose, targets=False)
        sync = self._cluster.eval_sync() if self._cluster is not None else LOCAL
        return write_predictions(self._predictions(adapter, callbacks, streamed=False), path,
                                 max_shard_bytes=max(1, int(max_shard_size * 2**30)), sync=sync,
                                 writes=sharded or sync.rank == 0, whole=not sharded)

    def _predictions(self, adapter: Adapter, callbacks: Iterable[Callback] | None, *,
                     streamed: bool) -> Iterator[Tree]:
        """The predict step's outputs batch by batch; compiled, `steps_per_execution` batches per call and
        their outputs joined, as Keras's predict (not under FSDP, whose lockstep placeholders stay apart).
        `streamed`: the caller's code runs between batches, in its own modes."""
        batches: Iterator[Any] = _first_drawn(adapter)
        if self._pipeline is not None:
            self._pipeline.prepare_inference(adapter.steps)
            if not self._strategy.sharded:
                batches = self._pipeline.group(batches)
        step = self._pipeline.predict if self._pipeline is not None else self._predict_batch
        return predict_batches(self.module, step, batches, self._side_callbacks(callbacks, adapter),
                               modes_per_batch=streamed)

    def _predict_batch(self, batch: Batch) -> Tree:
        """`predict_step` on one batch, for a model that was never compiled."""
        return self.predict_step((batch.x, None, None))

    def _eval_adapter(self, x: Any, y: Any, sample_weight: Any, batch_size: int | None, steps: int | None,
                      verbose: Any, *, targets: bool) -> tuple[Adapter, bool]:
        resolve_verbose(verbose)
        check.positive_int("batch_size", batch_size, allow_none=True)
        check.positive_int("steps", steps, allow_none=True)
        return self._inputs().evaluation(x, y, sample_weight, batch_size=batch_size or _DEFAULT_BATCH_SIZE,
                                         steps=steps, targets=targets)

    def _side_callbacks(self, callbacks: Iterable[Callback] | None, adapter: Adapter) -> CallbackList:
        listeners = CallbackList(callback_list(callbacks))
        listeners.set_model(self)
        listeners.set_params({"steps": adapter.steps, "verbose": 0})
        return listeners

    def _inputs(self) -> Inputs:
        return Inputs(self.device, float_dtype_of(self.module), self._cluster)

    # -- single batches -------------------------------------------------------------------------

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: Mapping[int, float] | None = None) -> dict[str, float]:
        """One optimizer update on one batch; returns that batch's loss and metrics (before the update)."""
        task = self._require_compiled("train_on_batch")
        check.class_weight(class_weight)
        adapter = self._inputs().fit_arrays(
            x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=2**62, shuffle=False,
            validation_split=0.0, validation_data=None, validation_batch_size=1, steps_per_epoch=None,
            validation_steps=None, gather_batches=1, check_finite=False,  # a hand-written loop's own business
        ).train
        task.output_checks = [partial(arm_target_checks, task, adapter=adapter)]
        batch = next(iter(adapter.epoch_batches(0)))
        pipeline = self._require_pipeline("train_on_batch")
        self.module.train()
        values = pipeline.train(batch)
        pipeline.flush()  # one update, even mid-accumulation
        return dict(zip(values.names, values.tensor.tolist()))

    def find_lr(self, x: Any, y: Any, **options: Any) -> LRFinderResult:
        """An exponential learning-rate sweep that leaves the model as it was; see `epochal.tune.lr_finder.find_lr`."""
        from epochal.tune.lr_finder import find_lr

        return find_lr(self, x, y, **options)

    def training_batches(self) -> Iterator[Batch]:
        """One more pass over this process's training batches of the current or last `fit` (SWA's BatchNorm update)."""
        if self._train_data is None:
            raise RuntimeError("`training_batches()` needs a `fit()` first: it passes over that fit's training data.")
        return self._train_data.epoch_batches(0)

    # -- saving ---------------------------------------------------------------------------------

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write the module's weights and buffers to one safetensors file, atomically.

        Under torch.distributed every rank calls it (FSDP gathers the shards on rank 0), rank 0 writes,
        and every rank returns once the file is there.
        """
        state = self._strategy.full_state(self.module)
        self._on_main_then_wait(lambda: saving.save_state(state, path))

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by `save_weights` (or `save`); another architecture is a ValueError.

        Under torch.distributed every rank reads the file, so it must be on storage each machine sees.
        """
        if sharded_state.is_shards(path):
            sharded_state.load_shards(path, self.module, None)
            return
        saving.load_weights(self.module, path, load=partial(self._strategy.load_full_state, self.module))

    def save(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        """Write weights and every optimizer's state (and plain `metadata`) so that `load` restores them.

        One file loadable without pickle; under FSDP a folder of every rank's shards written with
        torch.distributed.checkpoint (`metadata` then JSON values), which any number of processes can
        load. Under torch.distributed every rank calls it and returns once the file is there.
        """
        running = self.training_state if self._running else None  # a ModelCheckpoint in a fit: that run's
        fingerprint = (running.fingerprint if running is not None and running.fingerprint is not None else
                       run_fingerprint(self.module, self.optimizers, self._compile_options, {}, {})).value()
        if self._strategy.sharded:
            sharded_state.save_shards(path, self.module, self.optimizers,
                                      {"metadata": dict(metadata or {}), "fingerprint": fingerprint},
                                      self._cluster.eval_sync())  # type: ignore[union-attr]
            return
        self._on_main_then_wait(lambda: saving.save_checkpoint(path, self.module, self.optimizers or None, metadata,
                                                               fingerprint=fingerprint))

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore a `save` (or ModelCheckpoint) file or folder: weights, and optimizer states if compiled;
        returns its metadata."""
        if sharded_state.is_shards(path):
            return dict(sharded_state.load_shards(path, self.module, self.optimizers or None)["metadata"])
        if self._strategy.sharded:
            if self.optimizers:
                raise ValueError(f"{os.fspath(path)!r} is a one-file checkpoint, whose optimizer state this FSDP "
                                 "model cannot take (it loads sharded folders). Load its weights with `load_weights`.")
            return saving.load_checkpoint(path, self.module, None,
                                          load=partial(self._strategy.load_full_state, self.module))
        return saving.load_checkpoint(path, self.module, self.optimizers or None)

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
        if self._task is None:
            raise RuntimeError(f"You must call `compile()` before `{verb}()`.")
        return self._task

    def _require_pipeline(self, verb: str) -> StepPipeline:
        if self._pipeline is None:
            raise RuntimeError(f"You must call `compile()` before `{verb}()`.")
        return self._pipeline

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

    # -- export ---------------------------------------------------------------------------------

    def export(self, path: str | os.PathLike[str], format: str = "torch.export", *, example: Any,
               check_data: Any = None, batch_size: int = 32, dynamic_batch: bool = True,
               rtol: float = 1e-5) -> ExportResult:
        """Write the module as a program that runs without its class (`.pt2` or ONNX), checked against it first.

        See `epochal.export.export_module`; under torch.distributed every rank checks and rank 0 writes.
        """
        from epochal.export import export_module

        main = self._cluster is None or self._cluster.is_main
        result = export_module(self.module, path, format, example=example, check_data=check_data,
                               batch_size=batch_size, dynamic_batch=dynamic_batch, rtol=rtol, write=main)
        if self._cluster is not None:
            barrier()
        return result

    # -- seeing the model (thin: the work is in epochal.analysis) ---------------------------------

    def get_compile_config(self) -> dict[str, Any]:
        """`compile()`'s choices as plain values (Keras's name): the optimizer and its hyperparameters, the
        loss(es), loss weights and step options. Trackers log it as the run's parameters."""
        from epochal.analysis.run_params import compile_config

        task = self._require_compiled("get_compile_config")
        losses = task.losses() if task.has_loss else []
        return compile_config(self.optimizers, losses, task.loss_weights(), self._step_options.as_params())

    def interpret(self, x: Any, y: Any, *, batch_size: int | None = None, task: str = "auto",
                  class_names: Sequence[str] | None = None, top_k: int = 10, bins: int = 10,
                  include: Sequence[str] | None = None) -> Interpretation:
        """What the model gets wrong on `(x, y)`; see `epochal.analysis.interpretation`.

        Classification (read from the compiled loss): confusion matrix, per-class precision/recall/F1 and
        support, the `top_k` highest-loss samples, calibration (ECE, reliability diagram). Regression:
        residual summary and the worst samples. `str()` of the result is a report, `.plot()` a figure.

        Args:
            x: Inputs, as `predict` takes them.
            y: The true labels or values.
            batch_size: Batch size of the prediction. Defaults to `None` (32).
            task: `"classification"`, `"regression"` or `"auto"` (from the loss). Defaults to `"auto"`.
            class_names: A name per class, for the report. Defaults to `None`: class indices.
            top_k: How many highest-loss samples to list. Defaults to `10`.
            bins: Confidence bins of the calibration. Defaults to `10`.
            include: The parts to compute (`"confusion_matrix"`, `"per_class"`, `"top_losses"`,
                `"calibration"`; `"residuals"` for regression). Defaults to `None`: all of the task's.
        """
        from epochal.analysis.model_outputs import interpret_outputs

        compiled = self._require_compiled("interpret")
        y_pred = self.predict(x, batch_size=batch_size, verbose=0)
        return interpret_outputs(compiled.losses()[0], y_pred, to_tensors(y, "y"), task=task,
                                 class_names=class_names, top_k=top_k, bins=bins, include=include)

    def summary(self, x: Any = None, *, expand_nested: bool = False, print_fn: Any = None) -> None:
        """Print each layer's name, type, output shape and parameters, and the totals, as Keras does.

        Output shapes come from tracing one batch `x` (eval mode, no gradients: nothing changes); without
        `x` they show as `?`. Uses torchinfo (`pip install 'epochal[summary]'`); see `epochal.analysis.summary`.

        Args:
            x: One batch of inputs, as `fit` takes them. Defaults to `None`.
            expand_nested: Also list the layers inside nested modules. Defaults to `False`.
            print_fn: Called with the text. Defaults to `None`: `print`.
        """
        from epochal.analysis.summary import summarize

        batch = None if x is None else to_device(to_tensors(x, "x", float_dtype_of(self.module)), self.device)
        (print_fn or print)(str(summarize(self.module, batch, expand_nested=expand_nested)))


def _with_loss(loss: torch.Tensor, metrics: StepValues) -> StepValues:
    """The default steps' logs: `"loss"` (this batch's total, detached) and then the compiled metrics."""
    total = loss.detach().float().reshape(1)
    return StepValues(("loss", *metrics.names), torch.cat([total, metrics.tensor]) if len(metrics) else total)


def _first_drawn(adapter: Adapter) -> Iterator[Batch]:
    """`adapter`'s batches for one pass; a clear error when there is none."""
    batches = prefetch(adapter.epoch_batches(0))
    if batches is None:
        raise ValueError("`x` is empty: it yielded no batch.")
    return batches


def _refuse_validation_split(validation_split: Any, dataset: Any) -> None:
    if validation_split:
        raise ValueError(
            "`validation_split` is only supported for arrays, not datasets: pass `validation_data`. "
            f"Received: validation_split={validation_split!r} with x of type {type(dataset).__name__}"
        )
