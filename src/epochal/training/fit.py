"""Assembling a fit: the set-up checks, the callbacks in their order, `History.params`, the run's
fingerprint, the syncs and the plan, then the epoch loop under a signal guard (and the backup folder's lock)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.callbacks.callback import Callback
from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.history import History
from epochal.callbacks.progress import progress_callback, resolve_verbose
from epochal.callbacks.run_position import first_global_batch
from epochal.callbacks.rollback import Rollback
from epochal.data import Adapter
from epochal.data.validation_sets import log_prefix, source_name
from epochal.parallel.process import is_main_process
from epochal.parallel.sync import LOCAL
from epochal.step.pipeline import StepPipeline
from epochal.task import Task
from epochal.training.fingerprint import run_fingerprint, trajectory_arguments
from epochal.training.fork import Fork
from epochal.training.inputs import FitData
from epochal.training.loop import TRAIN_HOOKS, FitPlan, fit_loop
from epochal.training.preemption import SignalGuard
from epochal.training.rollback_points import RollbackPoints
from epochal.training.setup_checks import check_optimizers
from epochal.training.state import TrainingState
from epochal.training.step_control import StepControl
from epochal.training.target_checks import arm_target_checks

if TYPE_CHECKING:
    from epochal.callbacks.callback import ModelView

_C = TypeVar("_C", bound=Callback)


@dataclass(frozen=True)
class FitSetup:
    """What a fit trains with, besides the data: the model's parts and how ranks reduce."""

    model: ModelView
    pipeline: StepPipeline
    task: Task
    step_params: Mapping[str, Any]  # the compile options, as `History.params` shows them
    compile_options: Mapping[str, Any]  # what `compile` was given, for the run fingerprint
    attach: Callable[[History, TrainingState], None]  # the model keeps the run's History and state
    exclusive: Callable[[], AbstractContextManager[None]]  # refuses a nested fit while this one runs
    fit_sync: Callable[[bool], Any] | None = None  # `Cluster.fit_sync` under torch.distributed
    sharded: bool = False  # the module is sharded over the ranks (FSDP): backups hold shards


def run_fit(setup: FitSetup, data: FitData, *, epochs: int, initial_epoch: int, verbose: int | str,
            callbacks: Iterable[Callback] | None, validation_freq: int | Sequence[int],
            batch_size: int | None, validation_every: int | None = None, max_steps: int | None = None,
            max_time: float | None = None, resume_from: str | os.PathLike[str] | None = None,
            ) -> tuple[History, TrainingState]:
    """Train `setup.model` on `data` for epochs `initial_epoch .. epochs-1`; returns the History and the state.

    Compilation (`jit_compile`) happens here, before `on_train_begin`, on an example batch drawn without
    touching the random generators; the first epoch's own order is drawn inside the loop. The targets
    are checked against the losses on the first step's outputs, before its backward. `max_time`
    (seconds) counts from here; `validation_every` and `max_steps` are `epochal.training.step_control`'s.
    With `resume_from` the run is a fork of that backup (`epochal.training.fork`), read and verified
    here, before training.
    """
    model, pipeline, task = setup.model, setup.pipeline, setup.task
    train, validations = data.train, data.validations
    if validation_every is not None and not validations:
        raise ValueError("`validation_every` needs validation data: pass `validation_data` or `validation_split`. "
                         f"Received: validation_every={validation_every!r} without either")
    control = StepControl(validation_every=validation_every, max_steps=max_steps, max_time=max_time,
                          first_step=first_global_batch({"steps": train.steps, "initial_epoch": initial_epoch}))
    check_optimizers(model.module, model.optimizers)  # again: a rate may have changed since `compile`
    # Checked on the first step's outputs, before its backward: no forward of their own. In-memory
    # validation targets too; a validation stream's are checked as it is read.
    checked = [(train, "")] + [(validation, "validation data: " if name is None else f"{source_name(name)}: ")
                               for name, validation in validations.items() if getattr(validation, "y", None) is not None]
    task.output_checks = [partial(arm_target_checks, task, adapter=adapter, where=where) for adapter, where in checked]
    user_callbacks = callback_list(callbacks)
    history = History()
    fork = Fork(resume_from, history) if resume_from is not None else None
    backup, rollback = _one(user_callbacks, BackupAndRestore), _one(user_callbacks, Rollback)
    if setup.sharded:
        _refuse_under_fsdp(resume_from, rollback)
    if fork is not None and backup is not None:
        fork.refuse_writing_into(backup.backup_dir)
    if initial_epoch < epochs:
        planned = None if train.steps is None else train.steps * (epochs - initial_epoch)
        pipeline.prepare(train.example(), planned, bool(validations))
    progress = progress_callback(resolve_verbose(verbose) if is_main_process() else 0)
    listeners = CallbackList(([progress] if progress else []) + user_callbacks + [history])
    keys = list(pipeline.known_keys("train_step") or (task.log_keys() if not pipeline.steps.custom_train else []))
    params = {
        "epochs": epochs, "steps": train.steps, "batch_size": batch_size, "samples": data.samples,
        "initial_epoch": initial_epoch, "verbose": resolve_verbose(verbose), "do_validation": bool(validations),
        "metrics": keys + [log_prefix(name) + key for name in validations for key in keys],
        "validation_every": validation_every, "max_steps": max_steps, "max_time": max_time,
        **setup.step_params,
    }
    listeners.set_model(model)
    listeners.set_params(params)
    wants_batch_logs = CallbackList(user_callbacks).wants(*TRAIN_HOOKS)
    sync = setup.fit_sync(wants_batch_logs) if setup.fit_sync is not None else LOCAL
    fingerprint = run_fingerprint(model.module, model.optimizers, setup.compile_options,
                                  trajectory_arguments(params, validation_freq, data.whole), data.whole)
    # The step count is backed up in every run, as every validation is recorded at its step (History, loggers).
    state = TrainingState(model, callbacks=user_callbacks + [history, control], backup=backup,
                          fingerprint=fingerprint, epochs=epochs, epoch=initial_epoch, sync=sync, steps=pipeline,
                          sharded=setup.sharded, fork=fork)
    if rollback is not None:
        state.rollback = RollbackPoints(rollback, state, history)
    plan = FitPlan(train, validations, epochs, initial_epoch, validation_freq,
                   report_learning_rate=any(getattr(cb, "reports_learning_rate", False) for cb in user_callbacks),
                   sync=sync, state=state, control=control)
    setup.attach(history, state)
    holding = state.backup.hold() if state.backup is not None else contextlib.nullcontext()
    try:
        with setup.exclusive(), SignalGuard() as state.guard, holding:
            model.stop_training = False
            fit_loop(model, pipeline, task, plan, listeners)
    finally:
        task.output_checks = []  # a step that never computed the compiled loss leaves them for no one
    if control.paused and is_main_process():
        warnings.warn(_paused_message(state, max_time), stacklevel=4)
    return history, state


def _paused_message(state: TrainingState, max_time: float | None) -> str:
    where = f"after batch {state.batch} of epoch {state.epoch + 1}"
    if state.backup is None:
        return (f"fit: max_time={max_time:g}s ran out; training stopped {where}. No BackupAndRestore callback was "
                "given, so there is nothing to resume from.")
    return (f"fit: max_time={max_time:g}s ran out; training stopped {where} and a backup was written to "
            f"{state.backup.backup_dir!r}: run the same fit again to continue exactly where it stopped.")


def callback_list(callbacks: Iterable[Callback] | None) -> list[Callback]:
    """The user's `callbacks` argument as a list, checked: a clear TypeError for anything else."""
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


def _refuse_under_fsdp(resume_from: Any, rollback: Rollback | None) -> None:
    """Forks and rollbacks restore whole weights and optimizer states, which an FSDP run keeps only as shards."""
    if resume_from is not None:
        raise ValueError("`resume_from` (forking a run) is not supported with distributed=\"fsdp\" yet: its "
                         f"weights are sharded. Received: resume_from={str(resume_from)!r}; resume the run itself "
                         "with BackupAndRestore, or fork it under DDP")
    if rollback is not None:
        raise ValueError("The Rollback callback is not supported with distributed=\"fsdp\" yet: it keeps whole "
                         f"weights in memory. Received: callbacks=[..., {rollback!r}, ...]")


def _one(callbacks: list[Callback], kind: type[_C]) -> _C | None:
    """The callback of class `kind`, which the training state drives at its safe points (at most one per run)."""
    found = [cb for cb in callbacks if isinstance(cb, kind)]
    if len(found) > 1:
        raise ValueError(f"`callbacks` may hold at most one {kind.__name__}. Received: {len(found)}")
    return found[0] if found else None
