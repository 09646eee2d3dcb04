"""TensorBoard writes Keras-named scalars to sibling train/validation runs, read back from the event files."""

import sys

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from epochal.callbacks import TensorBoard  # noqa: E402
from epochal.callbacks.callback_list import CallbackList  # noqa: E402


def _scalars(folder):
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_epoch_scalars_overlay_train_and_validation(tmp_path, attach):
    board = attach(TensorBoard(tmp_path))
    board.on_train_begin()
    board.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.5, "learning_rate": 0.125})
    board.on_epoch_end(1, {"loss": 0.5})
    board.on_train_end()
    assert _scalars(tmp_path / "train") == {
        "epoch_loss": [(0, 1.0), (1, 0.5)], "epoch_learning_rate": [(0, 0.125)]}
    assert _scalars(tmp_path / "validation") == {"epoch_loss": [(0, 1.5)]}


def test_batch_scalars_every_n_batches(tmp_path, attach):
    board = attach(TensorBoard(tmp_path, update_freq=2), steps=3, initial_epoch=1)
    board.on_train_begin()
    for batch in range(3):
        board.on_train_batch_end(batch, {"loss": float(batch)})
    board.on_epoch_end(1, {"loss": 1.0})
    board.on_train_end()
    assert _scalars(tmp_path / "train")["batch_loss"] == [(4, 0.0), (6, 2.0)]  # counts on from 3 batches
    assert not (tmp_path / "validation").exists()


def test_epoch_mode_ignores_batches(tmp_path):
    assert not CallbackList([TensorBoard(tmp_path)]).wants("on_train_batch_end")


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install epochal\[tensorboard\]"):
        TensorBoard(tmp_path)


def test_bad_update_freq(tmp_path):
    with pytest.raises(ValueError, match=r"`update_freq` must be 'epoch', 'batch' or a positive integer"):
        TensorBoard(tmp_path, update_freq="step")
