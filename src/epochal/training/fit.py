"""Assembling a fit: the callbacks in their order, `History.params`, the resume fingerprint, the syncs and
the plan, then the epoch loop under a signal guard."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.callbacks.callback import Callback
from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.history import History
from epochal.callbacks.progress import progress_callback, resolve_verbose
from epochal.data import Adapter
from epochal.parallel.process import is_main_process
from epochal.parallel.sync import LOCAL
from epochal.step.pipeline import StepPipeline
from epochal.task import Task
from epochal.training.loop import TRAIN_HOOKS, FitPlan, fit_loop
from epochal.training.preemption import SignalGuard
from epochal.training.state import TrainingState

if TYPE_CHECKING:
    from epochal.callbacks.callback import ModelView


@dataclass(frozen=True)
class FitSetup:
    """What a fit trains with, besides the data: the model's parts and how ranks reduce."""

    model: ModelView
    pipeline: StepPipeline
    task: Task
    step_params: Mapping[str, Any]  # the compile options, as `History.params` shows them
    attach: Callable[[History, TrainingState], None]  # the model keeps the run's History and state
    exclusive: Callable[[], AbstractContextManager[None]]  # refuses a nested fit while this one runs
    fit_sync: Callable[[bool], Any] | None = None  # `Cluster.fit_sync` under torch.distributed


def run_fit(setup: FitSetup, train: Adapter, validation: Adapter | None, *, epochs: int, initial_epoch: int,
            verbose: int | str, callbacks: Iterable[Callback] | None, validation_freq: int | Sequence[int],
            batch_size: int | None, samples: int | None) -> tuple[History, TrainingState]:
    """Train `setup.model` on `train` for epochs `initial_epoch .. epochs-1`; returns the History and the state.

    Compilation (`jit_compile`) happens here, before `on_train_begin`, on an example batch drawn without
    touching the random generators; the first epoch's own order is drawn inside the loop.
    """
    model, pipeline, task = setup.model, setup.pipeline, setup.task
    user_callbacks = callback_list(callbacks)
    if initial_epoch < epochs:
        planned = None if train.steps is None else train.steps * (epochs - initial_epoch)
        pipeline.prepare(train.example(), planned, validation is not None)
    history = History()
    progress = progress_callback(resolve_verbose(verbose) if is_main_process() else 0)
    listeners = CallbackList(([progress] if progress else []) + user_callbacks + [history])
    keys = list(pipeline.known_keys("train_step") or (task.log_keys() if not pipeline.steps.custom_train else []))
    do_validation = validation is not None
    params = {
        "epochs": epochs, "steps": train.steps, "batch_size": batch_size, "samples": samples,
        "initial_epoch": initial_epoch, "verbose": resolve_verbose(verbose), "do_validation": do_validation,
        "metrics": keys + ([f"val_{key}" for key in keys] if do_validation else []),
        **setup.step_params,
    }
    listeners.set_model(model)
    listeners.set_params(params)
    wants_batch_logs = CallbackList(user_callbacks).wants(*TRAIN_HOOKS)
    sync = setup.fit_sync(wants_batch_logs) if setup.fit_sync is not None else LOCAL
    state = TrainingState(model, callbacks=user_callbacks + [history], backup=_backup_callback(user_callbacks),
                          fingerprint=_fingerprint(params, validation_freq, train, user_callbacks), epochs=epochs,
                          sync=sync, steps=pipeline)
    plan = FitPlan(train, validation, epochs, initial_epoch, validation_freq,
                   report_learning_rate=any(getattr(cb, "reports_learning_rate", False) for cb in user_callbacks),
                   sync=sync, state=state)
    setup.attach(history, state)
    with setup.exclusive(), SignalGuard() as state.guard:
        model.stop_training = False
        fit_loop(model, pipeline, task, plan, listeners)
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


def _backup_callback(callbacks: list[Callback]) -> BackupAndRestore | None:
    """The run's BackupAndRestore, which the loop calls at its safe points (at most one per run)."""
    backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError(f"`callbacks` may hold at most one BackupAndRestore. Received: {len(backups)}")
    return backups[0] if backups else None


def _fingerprint(params: dict[str, Any], validation_freq: Any, train: Adapter,
                 callbacks: list[Callback]) -> dict[str, Any]:
    """The `fit` arguments a backup must have been written with to be resumed exactly (plain values)."""
    keys = ("epochs", "steps", "batch_size", "samples", "initial_epoch", "do_validation", "metrics")
    fingerprint = {key: params[key] for key in keys}
    fingerprint["validation_freq"] = list(validation_freq) if not isinstance(validation_freq, int) else validation_freq
    fingerprint["shuffle"] = getattr(train, "shuffle", None)
    fingerprint["callbacks"] = [type(cb).__qualname__ for cb in callbacks]
    return fingerprint

