"""ModelCheckpoint(keep_best=k, keep_last=k): old files go only once the new one is in place, and
`best.json` always names a complete checkpoint."""

import doctest
import json
import os

import pytest
import torch

from epochal.callbacks import ModelCheckpoint
from epochal.callbacks import checkpoint_retention, model_checkpoint
from epochal.saving import load_checkpoint


def _run_epochs(callback, values, first=0):
    for epoch, value in enumerate(values, start=first):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value})


def _pointer(folder):
    return json.loads((folder / "best.json").read_text())


def test_keep_last_removes_old_files_only_after_the_new_one_is_in_place(tmp_path, attach, monkeypatch):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch:02d}.pt", keep_last=2))
    removals = []
    real_unlink = os.unlink

    def unlink(path):
        newest = max(name for name in os.listdir(tmp_path) if name.endswith(".pt"))
        removals.append((os.path.basename(path), newest))
        real_unlink(path)

    monkeypatch.setattr(checkpoint_retention.os, "unlink", unlink)
    checkpoint.on_train_begin()
    _run_epochs(checkpoint, [0.5, 0.4, 0.3, 0.2])
    assert sorted(os.listdir(tmp_path)) == ["03.pt", "04.pt"]  # no pointer without keep_best
    assert removals == [("01.pt", "03.pt"), ("02.pt", "04.pt")]


def test_keep_best_keeps_the_best_files_and_points_at_the_best(tmp_path, attach, model):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch:02d}.pt", keep_best=2))
    checkpoint.on_train_begin()
    for epoch, value in enumerate([0.5, 0.3, 0.6, 0.4, 0.35]):
        with torch.no_grad():
            model.module.weight.fill_(float(epoch))
        checkpoint.on_epoch_end(epoch, {"val_loss": value})
    assert sorted(os.listdir(tmp_path)) == ["02.pt", "05.pt", "best.json"]
    assert _pointer(tmp_path) == {"path": str(tmp_path / "02.pt"), "file": "02.pt", "value": 0.3, "epoch": 1,
                                  "batch": None}
    metadata = load_checkpoint(tmp_path / _pointer(tmp_path)["file"], model.module)
    assert metadata["epoch"] == 1 and torch.all(model.module.weight == 1.0)


def test_keep_best_and_keep_last_together_keep_both_sets(tmp_path, attach):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch:02d}.pt", monitor="val_accuracy", keep_best=1, keep_last=1))
    checkpoint.on_train_begin()
    for epoch, value in enumerate([0.7, 0.9, 0.8, 0.6]):
        checkpoint.on_epoch_end(epoch, {"val_accuracy": value})
    assert sorted(os.listdir(tmp_path)) == ["02.pt", "04.pt", "best.json"]
    assert _pointer(tmp_path)["file"] == "02.pt"


def test_a_failed_write_leaves_the_kept_files_and_the_pointer_as_they_were(tmp_path, attach, monkeypatch):
    checkpoint = attach(ModelCheckpoint(tmp_path / "{epoch:02d}.pt", keep_best=1))
    checkpoint.on_train_begin()
    _run_epochs(checkpoint, [0.5, 0.3])

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.model, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _run_epochs(checkpoint, [0.1], first=2)
    assert sorted(os.listdir(tmp_path)) == ["02.pt", "best.json"]
    assert _pointer(tmp_path)["file"] == "02.pt"


def test_state_dict_carries_the_kept_files_into_a_resumed_run(tmp_path, attach):
    values = [0.5, 0.3, 0.6, 0.4, 0.2]
    whole = attach(ModelCheckpoint(tmp_path / "whole" / "{epoch:02d}.pt", keep_best=1, keep_last=1))
    whole.on_train_begin()
    _run_epochs(whole, values)
    first = attach(ModelCheckpoint(tmp_path / "resumed" / "{epoch:02d}.pt", keep_best=1, keep_last=1))
    first.on_train_begin()
    _run_epochs(first, values[:3])
    second = attach(ModelCheckpoint(tmp_path / "resumed" / "{epoch:02d}.pt", keep_best=1, keep_last=1))
    second.on_train_begin()
    second.load_state_dict(first.state_dict())
    _run_epochs(second, values[3:], first=3)
    assert sorted(os.listdir(tmp_path / "resumed")) == sorted(os.listdir(tmp_path / "whole")) == ["05.pt", "best.json"]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"keep_best": 0}, "`keep_best` must be a positive integer or None. Received: keep_best=0"),
    ({"keep_last": -1}, "`keep_last` must be a positive integer or None. Received: keep_last=-1"),
    ({"keep_last": 1.5}, "`keep_last` must be a positive integer or None. Received: keep_last=1.5"),
])
def test_bad_counts_are_refused(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(tmp_path / "{epoch}.pt", **arguments)


@pytest.mark.parametrize("filepath", ["ckpt/best.pt", "ckpt-{epoch}/model.pt"])
def test_retention_needs_one_folder_and_a_name_per_file(filepath):
    with pytest.raises(ValueError, match="a `filepath` whose file name \\(not folder\\) has a field such as"):
        ModelCheckpoint(filepath, keep_last=2)


def test_docstring_example_runs():
    assert doctest.testmod(checkpoint_retention).failed == 0
