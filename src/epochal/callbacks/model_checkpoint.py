"""ModelCheckpoint: save the weights (or a resumable checkpoint) every epoch, every N batches, or when best."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.callbacks.checkpoint_retention import make_retention
from epochal.callbacks.monitor_reader import MonitorReader
from epochal.dtensors import all_finite
from epochal.callbacks.run_position import first_global_batch
from epochal.files.temporary import remove_orphans
from epochal.monitoring import initial_best, is_improvement, resolve_mode
from epochal.parallel.process import is_main_process


class ModelCheckpoint(Callback):
    """Save the model during training, with Keras's arguments and file naming.

    `filepath` is formatted with `epoch` (1-based, as Keras: `{epoch:02d}` is `01` after the first
    epoch), `batch` (1-based, when saving every N batches) and every key of the logs, e.g.
    `"ckpt-{epoch:02d}-{val_loss:.4f}.pt"`. Files are written atomically (see `epochal.saving`).

    With `save_weights_only=True` the file is a safetensors file of the weights
    (`epochal.saving.load_weights` reads it). Otherwise it is a full checkpoint with the optimizer
    state (`epochal.saving.load_checkpoint`) whose metadata is `{"epoch", "batch", "logs"}`: the
    0-based epoch index it was saved in, the 0-based batch index (`None` at an epoch's end) and the
    logs it was saved on, so `fit(..., initial_epoch=metadata["epoch"] + 1)` continues the run; the
    checkpoint also records the run's fingerprint (`epochal.training.fingerprint`). When training
    begins, temporary files that a checkpoint write killed half-way left in the folder are removed.

    With `save_best_only=True`, a file is written only when `monitor` improves on the best value so
    far (strictly, as `EarlyStopping`). Unlike Keras, an epoch whose logs lack `monitor` (a typo, or
    no validation that epoch with `validation_freq`) saves nothing and warns once: saving there
    would overwrite the best model with one that was never compared.

    Args:
        filepath: Where to save; may contain `str.format` fields as above.
        monitor: Log key compared with `save_best_only`. Defaults to `"val_loss"`.
        verbose: `1` prints a line each time the callback saves or skips. Defaults to `0`.
        save_best_only: Save only when `monitor` improves. Defaults to `False`.
        save_weights_only: Save the weights alone instead of a resumable checkpoint. Defaults to `False`.
        mode: `"min"`, `"max"` or `"auto"` (from the monitor's name). Defaults to `"auto"`.
        save_freq: `"epoch"` to save at each epoch's end, or an integer N to save every N training
            batches (counted across epochs). In a `fit(validation_every=M)` N must be a multiple of M,
            and each save waits for the validation at its batch, so `monitor` and `filepath` can use the
            `val_` keys of that validation (the batch's logs and then the validation's). Defaults to `"epoch"`.
        initial_value_threshold: With `save_best_only`, a value `monitor` must beat before the first
            save. Defaults to `None`.
        keep_best: Keep only the files with the `keep_best` best `monitor` values (a file saved
            without one ranks last) and write `best.json` beside them, naming the best file. Defaults
            to `None` (keep all).
        keep_last: Keep only the `keep_last` newest files (with `keep_best`: those too). A file is
            removed only after the new one is in place, and never the one `best.json` names.
            Defaults to `None` (keep all).

    Example:
        >>> import tempfile, os, torch
        >>> from types import SimpleNamespace
        >>> folder = tempfile.mkdtemp()
        >>> net = torch.nn.Linear(2, 1)
        >>> checkpoint = ModelCheckpoint(os.path.join(folder, "w-{epoch:02d}-{loss:.2f}.safetensors"),
        ...                              save_weights_only=True)
        >>> checkpoint.set_model(SimpleNamespace(module=net, optimizer=None, stop_training=False))
        >>> checkpoint.on_train_begin()
        >>> checkpoint.on_epoch_end(0, {"loss": 0.25})
        >>> os.listdir(folder)
        ['w-01-0.25.safetensors']
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
        *,
        keep_best: int | None = None,
        keep_last: int | None = None,
    ) -> None:
        super().__init__()
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"`save_freq` must be 'epoch' or a positive integer. Received: save_freq={save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self._monitor = MonitorReader("ModelCheckpoint", monitor)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = resolve_mode(mode, monitor)
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        self._retention = make_retention(self.filepath, keep_best=keep_best, keep_last=keep_last, mode=self.mode)
        if save_freq != "epoch":
            # Listen to batches only when saving by batch, so epoch-only saving costs nothing per batch.
            self.on_train_batch_end = self._on_train_batch_end  # type: ignore[method-assign]
        self._reset()

    def _reset(self) -> None:
        self.best = initial_best(self.mode, self.initial_value_threshold)
        self._batches_since_save = 0
        self._epoch = 0
        self._validation_every: int | None = self.params.get("validation_every")
        self._validated_step = first_global_batch(self.params)  # the step of the last validation seen
        self._batch: int | None = None  # the last training batch and its logs, for a save after a validation
        self._batch_logs: Mapping[str, float] = {}
        self._monitor.reset()
        if self._retention is not None:
            self._retention.reset()

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()
        if self._after_validations() and self.save_freq % self._validation_every:  # type: ignore[operator]
            raise ValueError(
                f"ModelCheckpoint: `save_freq={self.save_freq}` must be a multiple of fit's "
                f"`validation_every={self._validation_every}`, so that every save follows a validation. Pass a "
                "multiple of it, or save_freq='epoch'.")
        folder = os.path.dirname(self.filepath)
        if "{" not in folder and is_main_process():  # a folder named by the logs is only known when saving
            remove_orphans(folder or os.curdir)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        """With `fit(validation_every=...)`: save when a multiple of `save_freq` was passed since the last
        validation, on the last batch's logs and this validation's."""
        if not self._after_validations():
            return
        passed = self._validated_step // self.save_freq != step // self.save_freq  # type: ignore[operator]
        self._validated_step = step
        if passed:
            self._save(self._epoch, self._batch, {**self._batch_logs, **(logs or {})})

    def _after_validations(self) -> bool:
        """Whether batch-frequency saves wait for the validations of a `fit(validation_every=...)`."""
        return self.save_freq != "epoch" and self._validation_every is not None

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self._after_validations():  # kept unread: reading the logs would wait for the device every batch
            self._batch, self._batch_logs = batch, logs or {}
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:  # type: ignore[operator]
            self._batches_since_save = 0
            self._save(self._epoch, batch, logs or {})

    def _save(self, epoch: int, batch: int | None, logs: Mapping[str, float]) -> None:
        if not _finite(logs, self.model.module):  # type: ignore[union-attr]
            # The last finite file must survive a NaN run (keras#21771): never write over it.
            warnings.warn(f"ModelCheckpoint: the loss or weights are not finite at epoch {epoch + 1}; nothing saved.",
                          stacklevel=3)
            return
        filepath = self._format(epoch, batch, logs)
        if self.save_best_only and not self._improved(epoch, logs, filepath):
            return
        main = is_main_process()  # every rank tracks `best` and saves (FSDP gathers shards); rank 0 writes
        if self.verbose > 0 and not self.save_best_only and main:
            print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
        folder = os.path.dirname(filepath)
        if folder and main:
            os.makedirs(folder, exist_ok=True)
        model = self.model
        assert model is not None
        if self.save_weights_only:
            model.save_weights(filepath)
        else:
            model.save(filepath, {"epoch": epoch, "batch": batch, "logs": {k: float(v) for k, v in logs.items()}})
        self._retain(filepath, epoch, batch, logs, files=main)

    def _retain(self, filepath: str, epoch: int, batch: int | None, logs: Mapping[str, float], *,
                files: bool = True) -> None:
        """With `keep_best`/`keep_last`: record the file just written, then drop those no longer kept."""
        if self._retention is not None:
            value = self._monitor.read(logs) if self._retention.keep_best else None
            self._retention.saved(filepath, value, epoch, batch, files=files)

    def _improved(self, epoch: int, logs: Mapping[str, float], filepath: str) -> bool:
        """Whether `monitor` beat the best so far (updating it), with Keras's verbose messages."""
        current = self._monitor.read(logs)
        if current is None:
            return False
        if is_improvement(current, self.best, mode=self.mode, min_delta=0.0):
            if self.verbose > 0 and is_main_process():
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0 and is_main_process():
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
        return False

    def _format(self, epoch: int, batch: int | None, logs: Mapping[str, float]) -> str:
        fields: dict[str, Any] = dict(logs)
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields.setdefault("batch", batch + 1)
        try:
            return self.filepath.format(**fields)
        except KeyError as error:
            raise ValueError(
                f"`filepath` refers to {error} which is not in the logs. Received: filepath={self.filepath!r}; "
                f"available keys: {', '.join(sorted(fields))}."
            ) from None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": self.best, "batches_since_save": self._batches_since_save}
        if self._after_validations():
            state["validated"] = {"step": self._validated_step, "batch": self._batch, "logs": dict(self._batch_logs)}
        return state if self._retention is None else {**state, "retention": self._retention.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self._batches_since_save = int(state["batches_since_save"])
        if "validated" in state:
            validated = state["validated"]
            self._validated_step, self._batch, self._batch_logs = validated["step"], validated["batch"], validated["logs"]
        if self._retention is not None and "retention" in state:
            self._retention.load_state_dict(state["retention"])


def _finite(logs: Mapping[str, float], module: torch.nn.Module) -> bool:
    if not math.isfinite(float(logs.get("loss", 0.0))):
        return False
    return all_finite(module.state_dict().values())
