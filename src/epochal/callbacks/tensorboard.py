"""TensorBoard: scalar curves through TensorBoard's own writer, training and validation overlaid as in Keras."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.callbacks.run_position import first_global_batch
from epochal.callbacks.update_freq import batch_interval
from epochal.parallel.process import is_main_process


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
    1-based, continuing from `initial_epoch * steps`). Run `tensorboard --logdir <log_dir>` to view.

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

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()
        self._global_batch = first_global_batch(self.params)

    def _writer(self, run: str) -> Any:
        """The run's writer, made on first use so a fit without validation leaves no empty run."""
        if run not in self._writers:
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

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def state_dict(self) -> dict[str, Any]:
        return {"global_batch": self._global_batch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._global_batch = int(state["global_batch"])
