"""ModelCheckpoint names, chooses and writes files as Keras does, driven by scripted logs."""

import os
import warnings

import pytest
import torch

from epochal.callbacks import ModelCheckpoint
from epochal.saving import load_checkpoint, load_weights


def _run_epochs(callback, losses, key="val_loss"):
    callback.on_train_begin()
    for epoch, value in enumerate(losses):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, key: value})


def test_every_epoch_formats_epoch_one_based_and_any_logs_key(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.pt"))
    _run_epochs(checkpoint, [0.5, 0.25])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01-0.50.pt", "ckpt-02-0.25.pt"]


def test_save_best_only_writes_on_strict_improvement(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch}.safetensors", save_best_only=True,
                                        save_weights_only=True))
    _run_epochs(checkpoint, [0.5, 0.6, 0.5, 0.4, 0.45])
    assert sorted(os.listdir(tmp_path)) == ["1.safetensors", "4.safetensors"]
    assert checkpoint.best == 0.4


def test_save_best_only_max_mode_and_initial_value_threshold(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch}.pt", monitor="val_accuracy", save_best_only=True,
                                        initial_value_threshold=0.7))
    _run_epochs(checkpoint, [0.6, 0.7, 0.8, 0.75], key="val_accuracy")
    assert os.listdir(tmp_path) == ["3.pt"]


def test_one_file_is_overwritten_with_the_best_weights(tmp_path, attach, model):
    path = tmp_path / "best.safetensors"
    checkpoint = attach(ModelCheckpoint(path, save_best_only=True, save_weights_only=True))
    checkpoint.on_train_begin()
    for epoch, (loss, fill) in enumerate([(0.5, 1.0), (0.3, 2.0), (0.4, 3.0)]):
        with torch.no_grad():
            model.module.weight.fill_(fill)
        checkpoint.on_epoch_end(epoch, {"val_loss": loss})
    load_weights(model.module, path)
    assert torch.all(model.module.weight == 2.0)
    assert os.listdir(tmp_path) == ["best.safetensors"]


def test_missing_monitor_warns_once_and_saves_nothing(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch}.pt", save_best_only=True))
    checkpoint.on_train_begin()
    with pytest.warns(UserWarning, match=r"monitoring `val_loss`, which is not in the logs. Available keys: loss"):
        checkpoint.on_epoch_end(0, {"loss": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.on_epoch_end(1, {"loss": 0.9})
    checkpoint.on_epoch_end(2, {"loss": 0.8, "val_loss": 0.7})
    assert os.listdir(tmp_path) == ["3.pt"]


def test_integer_save_freq_counts_batches_across_epochs(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "e{epoch}-b{batch}.pt", save_freq=3))
    checkpoint.on_train_begin()
    for epoch in range(2):
        checkpoint.on_epoch_begin(epoch)
        for batch in range(4):
            checkpoint.on_train_batch_end(batch, {"loss": 1.0})
        checkpoint.on_epoch_end(epoch, {"loss": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["e1-b3.pt", "e2-b2.pt"]


def test_epoch_saving_does_not_listen_to_batches():
    from epochal.callbacks.callback_list import CallbackList

    assert not CallbackList([ModelCheckpoint("x.pt")]).wants("on_train_batch_end")
    assert CallbackList([ModelCheckpoint("x.pt", save_freq=5)]).wants("on_train_batch_end")


def test_full_checkpoint_holds_optimizer_state_and_epoch(tmp_path, attach, model):
    model.module(torch.randn(4, 3)).sum().backward()
    model.optimizer = torch.optim.Adam(model.module.parameters(), lr=0.01)
    model.optimizer.step()
    checkpoint = attach(ModelCheckpoint(tmp_path / "c.pt"))
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(4, {"loss": 0.5})
    fresh = torch.nn.Linear(3, 2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.01)
    metadata = load_checkpoint(tmp_path / "c.pt", fresh, fresh_optimizer)
    assert metadata == {"epoch": 4, "batch": None, "logs": {"loss": 0.5}}
    assert torch.equal(fresh.weight, model.module.weight)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1


def test_creates_missing_folders(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "a" / "b" / "w.safetensors", save_weights_only=True))
    _run_epochs(checkpoint, [1.0])
    assert (tmp_path / "a" / "b" / "w.safetensors").exists()


def test_unknown_filepath_key_is_a_clear_error(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{val_acc:.2f}.pt"))
    checkpoint.on_train_begin()
    with pytest.raises(ValueError, match=r"`filepath` refers to 'val_acc' which is not in the logs"):
        checkpoint.on_epoch_end(0, {"loss": 1.0})


def test_bad_save_freq():
    with pytest.raises(ValueError, match=r"`save_freq` must be 'epoch' or a positive integer. Received: save_freq=0"):
        ModelCheckpoint("x.pt", save_freq=0)


def test_state_resets_on_train_begin(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch}.pt", save_best_only=True))
    _run_epochs(checkpoint, [0.1])
    _run_epochs(checkpoint, [0.5])
    assert checkpoint.best == 0.5


def test_verbose_messages(tmp_path, attach, capsys):
    checkpoint = attach(ModelCheckpoint(tmp_path / "m.pt", save_best_only=True, verbose=1))
    _run_epochs(checkpoint, [0.5, 0.6])
    out = capsys.readouterr().out
    assert "Epoch 1: val_loss improved from inf to 0.50000, saving model to" in out
    assert "Epoch 2: val_loss did not improve from 0.50000" in out
