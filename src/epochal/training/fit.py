"""Assembling a fit: the set-up checks, the callbacks in their order, `History.params`, the run's
fingerprint, the syncs and the plan, then the epoch loop under a signal guard (and the backup folder's lock)."""

from __future__ import annotations

import contextlib
import os
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
from epochal.callbacks.rollback import Rollback
from epochal.data import Adapter
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


def run_fit(setup: FitSetup, data: FitData, *, epochs: int, initial_epoch: int, verbose: int | str,
            callbacks: Iterable[Callback] | None, validation_freq: int | Sequence[int],
            batch_size: int | None, resume_from: str | os.PathLike[str] | None = None) -> tuple[History, TrainingState]:
    """Train `setup.model` on `data` for epochs `initial_epoch .. epochs-1`; returns the History and the state.

    Compilation (`jit_compile`) happens here, before `on_train_begin`, on an example batch drawn without
    touching the random generators; the first epoch's own order is drawn inside the loop. The targets
    are checked against the losses on the first step's outputs, before its backward. With `resume_from`
    the run is a fork of that backup (`epochal.training.fork`), read and verified here, before training.
    """
    model, pipeline, task = setup.model, setup.pipeline, setup.task
    train, validation = data.train, data.validation
    check_optimizers(model.module, model.optimizers)  # again: a rate may have changed since `compile`
    # Checked on the first step's outputs, before its backward: no forward of their own. In-memory
    # validation targets too; a validation stream's are checked as it is read.
    checked = [(train, "")] + ([(validation, "validation data: ")] if getattr(validation, "y", None) is not None else [])
    task.output_checks = [partial(arm_target_checks, task, adapter=adapter, where=where) for adapter, where in checked]
    user_callbacks = callback_list(callbacks)
    history = History()
    fork = Fork(resume_from, history) if resume_from is not None else None
    backup = _one(user_callbacks, BackupAndRestore)
    if fork is not None and backup is not None:
        fork.refuse_writing_into(backup.backup_dir)
    if initial_epoch < epochs:
        planned = None if train.steps is None else train.steps * (epochs - initial_epoch)
        pipeline.prepare(train.example(), planned, validation is not None)
    progress = progress_callback(resolve_verbose(verbose) if is_main_process() else 0)
    listeners = CallbackList(([progress] if progress else []) + user_callbacks + [history])
    keys = list(pipeline.known_keys("train_step") or (task.log_keys() if not pipeline.steps.custom_train else []))
    do_validation = validation is not None
    params = {
        "epochs": epochs, "steps": train.steps, "batch_size": batch_size, "samples": data.samples,
        "initial_epoch": initial_epoch, "verbose": resolve_verbose(verbose), "do_validation": do_validation,
        "metrics": keys + ([f"val_{key}" for key in keys] if do_validation else []),
        **setup.step_params,
    }
    listeners.set_model(model)
    listeners.set_params(params)
    wants_batch_logs = CallbackList(user_callbacks).wants(*TRAIN_HOOKS)
    sync = setup.fit_sync(wants_batch_logs) if setup.fit_sync is not None else LOCAL
    fingerprint = run_fingerprint(model.module, model.optimizers, setup.compile_options,
                                  trajectory_arguments(params, validation_freq, data.whole), data.whole)
    state = TrainingState(model, callbacks=user_callbacks + [history], backup=backup, fingerprint=fingerprint,
                          epochs=epochs, epoch=initial_epoch, sync=sync, steps=pipeline, fork=fork)
    rollback = _one(user_callbacks, Rollback)
    if rollback is not None:
        state.rollback = RollbackPoints(rollback, state, history)
    plan = FitPlan(train, validation, epochs, initial_epoch, validation_freq,
                   report_learning_rate=any(getattr(cb, "reports_learning_rate", False) for cb in user_callbacks),
                   sync=sync, state=state)
    setup.attach(history, state)
    holding = state.backup.hold() if state.backup is not None else contextlib.nullcontext()
    try:
        with setup.exclusive(), SignalGuard() as state.guard, holding:
            model.stop_training = False
            fit_loop(model, pipeline, task, plan, listeners)
    finally:
        task.output_checks = []  # a step that never computed the compiled loss leaves them for no one
    return history, state


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


def _one(callbacks: list[Callback], kind: type[_C]) -> _C | None:
    """The callback of class `kind`, which the training state drives at its safe points (at most one per run)."""
    found = [cb for cb in callbacks if isinstance(cb, kind)]
    if len(found) > 1:
        raise ValueError(f"`callbacks` may hold at most one {kind.__name__}. Received: {len(found)}")
    return found[0] if found else None
