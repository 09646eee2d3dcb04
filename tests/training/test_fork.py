"""Forking a run: from any backup the fork *is* the parent up to there (weights, optimizer, callbacks, History,
data order, random state), so with nothing changed it repeats the parent bit for bit; what its own `fit` and
`compile` set differently takes effect from the fork point; what cannot change is refused before anything loads,
and the parent's files are only read."""

import os

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore, EarlyStopping, ModelCheckpoint
from epochal.training.fork import find_backup
from epochal.training.preemption import TrainingInterrupted


def _data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(80, 3, generator=generator)
    return x, x.sum(1, keepdim=True)


def _model(lr=None, optimizer="adam", hidden=4):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Dropout(0.2), torch.nn.Linear(hidden, 1))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=optimizer, loss="mse")
    if lr is not None:
        model.optimizer.param_groups[0]["lr"] = lr
    return model


def _fit(model, epochs=4, batch_size=16, callbacks=(), seed=1, **options):
    torch.manual_seed(seed)  # a fork draws nothing from it: the parent's generators come back
    x, y = _data()
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=0.2, verbose=0,
                     callbacks=list(callbacks), **options)


@pytest.fixture
def parent(tmp_path):
    """A 4-epoch run that kept every epoch's backup and two inside epochs (save_freq=3 of 4 batches)."""
    model = _model()
    folder = tmp_path / "parent"
    _fit(model, callbacks=[EarlyStopping(patience=10),
                           BackupAndRestore(folder, save_freq=3, keep=None, delete_checkpoint=False)])
    return model, folder


def _files(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.module.state_dict().values(), b.module.state_dict().values()))


@pytest.mark.parametrize("epoch, batch", [(2, None), (2, 3)], ids=["after epoch 2", "inside epoch 2"])
def test_a_fork_with_nothing_changed_repeats_the_parent_bit_for_bit(parent, epoch, batch):
    model, folder = parent
    fork = _model()
    history = _fit(fork, callbacks=[EarlyStopping(patience=10)], seed=99,
                   resume_from=find_backup(folder, epoch, batch))
    assert _same_weights(fork, model)
    assert all(torch.equal(a, b) for a, b in zip(fork.optimizer.state_dict()["state"][0].values(),
                                                  model.optimizer.state_dict()["state"][0].values()))
    assert history.history == model.history.history and history.epoch == [0, 1, 2, 3]
    [event] = history.events
    assert (event["kind"], event["epoch"], event["batch"], event["changes"]) == (
        "fork", 2 if batch is None else 1, batch or 0, {})


def test_what_the_fork_sets_takes_effect_from_the_fork_point_and_the_parent_is_untouched(parent):
    model, folder = parent
    before = _files(folder)
    fork = _model(lr=1e-4)
    history = _fit(fork, epochs=6, batch_size=32, resume_from=find_backup(folder, 2))
    assert _files(folder) == before, "the parent's backups are only read"
    assert fork.optimizer.param_groups[0]["lr"] == 1e-4 and history.params["steps"] == 2
    assert history.epoch == list(range(6))
    assert {key: values[:2] for key, values in history.history.items()} == \
           {key: values[:2] for key, values in model.history.history.items()}, "the History continues the parent's"
    assert history.history["loss"][2] != model.history.history["loss"][2]
    [event] = history.events
    assert event["changes"] == {"epochs": [4, 6], "batch_size": [16, 32], "steps": [4, 2],
                                "validation_batch_size": [16, 32], "lr": [0.001, 0.0001]}
    assert "BackupAndRestore" in event["callbacks"] and "EarlyStopping" in event["callbacks"]


def test_an_unchanged_setting_continues_as_the_parent_left_it(tmp_path):
    model = _model()
    folder = tmp_path / "parent"
    lowered = epochal.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: model.optimizer.param_groups[0].update(lr=5e-4) if epoch == 0 else None)
    _fit(model, epochs=2, callbacks=[lowered, BackupAndRestore(folder, keep=None, delete_checkpoint=False)])
    fork = _model()
    _fit(fork, epochs=3, resume_from=find_backup(folder, 1))
    assert fork.optimizer.param_groups[0]["lr"] == 5e-4, "the rate the parent's callback set carries on"


def test_a_fork_stopped_by_a_signal_continues_from_its_own_backups(parent, tmp_path, sigterm_after):
    _, folder = parent
    source = find_backup(folder, 1)
    SigtermAt = sigterm_after
    whole = _model(lr=3e-3)
    _fit(whole, resume_from=source, callbacks=[BackupAndRestore(tmp_path / "whole"), SigtermAt(None)])
    with pytest.raises(TrainingInterrupted):
        _fit(_model(lr=3e-3), resume_from=source, callbacks=[BackupAndRestore(tmp_path / "parts"), SigtermAt(6)])
    resumed = _model(lr=3e-3)
    history = _fit(resumed, resume_from=source, callbacks=[BackupAndRestore(tmp_path / "parts"), SigtermAt(None)])
    assert _same_weights(resumed, whole) and history.history == whole.history.history
    assert [event["kind"] for event in history.events] == ["fork"], "recorded once, kept in the fork's backup"


def test_a_fork_from_a_checkpoint_warns_that_it_holds_no_random_state(tmp_path):
    model = _model()
    _fit(model, epochs=2, callbacks=[ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.pt"))])
    fork = _model()
    with pytest.warns(UserWarning, match="no random state, callbacks or History"):
        history = _fit(fork, epochs=3, resume_from=tmp_path / "ckpt-1.pt")
    assert history.epoch == [1, 2] and history.events[0]["kind"] == "fork"


def test_what_a_fork_cannot_change_is_refused_before_anything_loads(parent, tmp_path):
    _, folder = parent
    source = find_backup(folder, 2)
    before = _files(folder)
    wider = _model(hidden=5)
    untouched = {k: v.clone() for k, v in wider.module.state_dict().items()}
    with pytest.raises(ValueError, match=r"Cannot fork .* module entry `0.weight`: \(4, 3\) float32 in the parent "
                                         r"but \(5, 3\) float32 now.*Nothing was loaded"):
        _fit(wider, resume_from=source)
    assert all(torch.equal(v, wider.module.state_dict()[k]) for k, v in untouched.items())
    with pytest.raises(ValueError, match="optimizer: epochal.optimizers.adam.Adam in the parent but epochal.optimizers.sgd.SGD now"):
        _fit(_model(optimizer="sgd"), resume_from=source)
    with pytest.raises(ValueError, match=r"batch_size=16 in the parent but 32 now, inside a pass over the data"):
        _fit(_model(), batch_size=32, resume_from=find_backup(folder, 2, 3))
    with pytest.raises(ValueError, match=r"epochs=2 now, but the fork starts after 2 epoch\(s\)"):
        _fit(_model(), epochs=2, resume_from=source)
    with pytest.raises(ValueError, match="writes into .* where the run it forks .* keeps its backups"):
        _fit(_model(), resume_from=source, callbacks=[BackupAndRestore(folder)])
    assert _files(folder) == before


def test_a_missing_or_damaged_source_is_a_clear_error(parent, tmp_path):
    _, folder = parent
    with pytest.raises(FileNotFoundError, match="no such backup, backup folder or checkpoint"):
        _fit(_model(), resume_from=tmp_path / "nowhere.pt")
    with pytest.raises(ValueError, match="the run's last backup is after epoch 4, so that point is past its end"):
        find_backup(folder, 7)
    with pytest.raises(ValueError, match=r"No backup .* after batch 1 of epoch 2; there are backups after batch 3 of epoch 1, after epoch 1, "
                                         r"after batch 3 of epoch 2"):
        find_backup(folder, 2, 1)
    source = find_backup(folder, 2)
    data = bytearray(open(source, "rb").read())
    data[len(data) // 2] ^= 1
    open(source, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"backup-\d+\.pt cannot be used: its checksum does not match"):
        _fit(_model(), resume_from=source)
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(ValueError, match="neither an epochal backup nor a checkpoint"):
        _fit(_model(), resume_from=tmp_path / "notes.pt")


def test_docstring_example():
    import doctest

    from epochal.training import fork

    assert doctest.testmod(fork).failed == 0
