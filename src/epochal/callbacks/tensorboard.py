"""TensorBoard: scalar curves through TensorBoard's own writer, training and validation overlaid as in Keras."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.callbacks.run_position import first_global_batch, step_tag
from epochal.callbacks.update_freq import batch_interval
from epochal.parallel.process import is_main_process

_RUNS = ("train", "validation")
_EVENTS = "tfevents"  # event files are named events.out.tfevents.<time>.<host>...


def _summary_writer_class() -> type:
    """`torch.utils.tensorboard.SummaryWriter`, imported only when a TensorBoard callback is made."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "The TensorBoard callback needs the `tensorboard` package. Install it with "
            "`pip install epochal[tensorboard]` (or `pip install tensorboard`)."
        ) from error
    return SummaryWriter


class TensorBoard(Callback):
    """Log scalars for TensorBoard: `log_dir/train` and `log_dir/validation` runs with the same tags.

    As Keras: at each epoch's end every training key `k` is written as `epoch_k` to the `train` run
    and every `val_k` as `epoch_k` to the `validation` run (step = 0-based epoch index), so
    TensorBoard draws a key's training and validation curves on one chart. The engine's
    `learning_rate` appears as `epoch_learning_rate`. With `update_freq` set to `"batch"` or N, the
    training batch values are also written as `batch_k` every N batches (step = global batch count,
    1-based, continuing from `initial_epoch * steps`). Every validation is also written to the
    `validation` run as `evaluation_k_vs_iterations` at its global step (Keras 3's tag), so the mid-epoch
    validations of `fit(validation_every=N)` are drawn too. Run `tensorboard --logdir <log_dir>` to view.

    A run resumed by `BackupAndRestore` continues the step counts, and before writing anything it
    rewinds the event files to where they were at the backup it resumes: events written after that
    backup by the interrupted run are cut off (an event file is a sequence of records, cut at a
    record's end), and event files created after it are removed — so each step is in the logs once.

    Args:
        log_dir: Folder for the event files. Defaults to `"logs"`.
        update_freq: `"epoch"`, `"batch"` (every batch) or an integer N (every N batches).
            Defaults to `"epoch"`.

    Example:
        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> board = TensorBoard(folder)
        >>> board.on_train_begin()
        >>> board.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.6})
        >>> board.on_train_end()
        >>> sorted(os.listdir(folder))
        ['train', 'validation']
    """

    def __init__(self, log_dir: str | os.PathLike[str] = "logs", update_freq: str | int = "epoch") -> None:
        super().__init__()
        interval = batch_interval(update_freq)
        self._writer_class = _summary_writer_class()  # fail now, not after the first epoch
        self.log_dir = os.fspath(log_dir)
        self.update_freq = interval or "epoch"
        if interval is not None:
            # Listen to batches only when asked, so epoch-only logging costs nothing per batch.
            self.on_train_batch_end = self._on_train_batch_end  # type: ignore[method-assign]
        self._writers: dict[str, Any] = {}
        self._global_batch = 0
        self._resume_files: dict[str, dict[str, int]] | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()
        self._global_batch = first_global_batch(self.params)
        self._resume_files = None

    def _writer(self, run: str) -> Any:
        """The run's writer, made on first use so a fit without validation leaves no empty run."""
        if run not in self._writers:
            if self._resume_files is not None:
                rewind_event_files(self.log_dir, self._resume_files)
                self._resume_files = None
            self._writers[run] = self._writer_class(log_dir=os.path.join(self.log_dir, run))
        return self._writers[run]

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._global_batch += 1
        if self._global_batch % self.update_freq == 0 and is_main_process():  # type: ignore[operator]
            writer = self._writer("train")
            for key, value in (logs or {}).items():
                writer.add_scalar(f"batch_{key}", value, self._global_batch)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if not is_main_process():  # under torch.distributed rank 0 alone writes the event files
            return
        for key, value in (logs or {}).items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(run).add_scalar(f"epoch_{name}", value, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        if not is_main_process():
            return
        writer = self._writer("validation")
        for key, value in (logs or {}).items():
            writer.add_scalar(step_tag(key), value, step)
        writer.flush()  # a mid-epoch point shows while the epoch still trains

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def state_dict(self) -> dict[str, Any]:
        """The step count, and every event file's size: what a resume rewinds the logs to."""
        for writer in self._writers.values():
            writer.flush()
        return {"global_batch": self._global_batch, "files": event_file_sizes(self.log_dir)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._global_batch = int(state["global_batch"])
        self._resume_files = state.get("files")  # applied before the first event is written


def event_file_sizes(log_dir: str) -> dict[str, dict[str, int]]:
    """`{run: {event file: size}}` for the `train` and `validation` runs under `log_dir`."""
    sizes: dict[str, dict[str, int]] = {}
    for run in _RUNS:
        folder = os.path.join(log_dir, run)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        sizes[run] = {name: os.path.getsize(os.path.join(folder, name)) for name in names if _EVENTS in name}
    return sizes


def rewind_event_files(log_dir: str, sizes: Mapping[str, Mapping[str, int]]) -> None:
    """Cut each event file back to its size in `sizes` and remove the event files it does not list."""
    for run, now in event_file_sizes(log_dir).items():
        kept = sizes.get(run, {})
        for name, size in now.items():
            path = os.path.join(log_dir, run, name)
            if name not in kept:
                os.unlink(path)  # written after the backup by the interrupted run
            elif size > kept[name]:
                os.truncate(path, kept[name])
