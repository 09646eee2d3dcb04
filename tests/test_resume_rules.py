"""A backup belongs to one run: a resume that would continue another experiment is refused, naming what
differs and touching no file; what does not change the trajectory (callbacks, a larger `epochs`) is forgiven
and the result is bit-identical to a run never interrupted."""

import os

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore, Callback, CSVLogger, EarlyStopping
from epochal.training.callback_states import callback_states, restore_callback_states
from epochal.training.preemption import TrainingInterrupted

from interruptions import SigtermAfter


def _data(seed=3, n=64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    return x, x.sum(1, keepdim=True)


def _model(optimizer="adam", loss="mse"):
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)),
                          device="cpu")
    model.compile(optimizer=optimizer, loss=loss)
    return model


_SigtermAt = SigtermAfter  # SIGTERM after the `at`-th training batch: fit backs up and stops


def _interrupted(folder, at=6, epochs=3, **fit):
    """A run of `epochs` stopped by a signal after batch `at` (4 batches per epoch), its backup in `folder`."""
    x, y = _data()
    with pytest.raises(TrainingInterrupted):
        _model().fit(x, y, epochs=epochs, batch_size=16, verbose=0,
                     callbacks=[BackupAndRestore(folder), _SigtermAt(at)], **fit)


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.module.state_dict().values(), b.module.state_dict().values()))


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if not name.startswith(".")}


def test_resume_after_adding_a_csv_logger_is_bit_identical_and_says_so(tmp_path):
    x, y = _data()
    reference = _model()
    expected = reference.fit(x, y, epochs=3, batch_size=16, verbose=0)
    _interrupted(tmp_path / "backup", at=6)
    resumed = _model()
    with pytest.warns(UserWarning, match=r"other callbacks than the backup's .*new, starting afresh: CSVLogger"):
        history = resumed.fit(x, y, epochs=3, batch_size=16, verbose=0,
                              callbacks=[BackupAndRestore(tmp_path / "backup"), CSVLogger(tmp_path / "log.csv")])
    assert _same_weights(resumed, reference)
    assert history.history == expected.history
    # The new logger starts at the restored position: epochs 1 and 2 (epoch 0 ended before the interruption).
    assert [row.split(",")[0] for row in (tmp_path / "log.csv").read_text().splitlines()] == ["epoch", "1", "2"]


def test_resume_with_a_larger_epochs_trains_further_exactly(tmp_path):
    x, y = _data()
    reference = _model()
    expected = reference.fit(x, y, epochs=5, batch_size=16, verbose=0)
    _interrupted(tmp_path / "backup", at=6, epochs=3)
    resumed = _model()
    with pytest.warns(UserWarning, match=r"no longer given, their saved state unused: SigtermAfter"):
        history = resumed.fit(x, y, epochs=5, batch_size=16, verbose=0,
                              callbacks=[BackupAndRestore(tmp_path / "backup")])
    assert _same_weights(resumed, reference)
    assert history.history == expected.history and history.epoch == [0, 1, 2, 3, 4]


def test_a_finished_run_trains_further_when_epochs_grows(tmp_path):
    x, y = _data()
    reference = _model()
    reference.fit(x, y, epochs=4, batch_size=16, verbose=0)
    first = _model()
    first.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    again = _model()
    history = again.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    assert history.epoch == [0, 1, 2, 3]
    assert _same_weights(again, reference)


@pytest.mark.parametrize("change, message", [
    (dict(fit=dict(shuffle=False)), r"shuffle=True in the backup but False now"),
    (dict(fit=dict(epochs=1)), r"epochs=1 now, but the backup has trained past it \(to batch 2 of epoch 2\)"),
    (dict(model=dict(loss="mae")), r"compile option loss='mse' in the backup but 'mae' now"),
    (dict(model=dict(optimizer="sgd")), r"optimizer: epochal.optimizers.adam.Adam in the backup but epochal.optimizers.sgd.SGD now"),
    (dict(data=5), r"train data `x`: other values \(same shape \(64, 3\) float32\)"),
    (dict(data_rows=48), r"train data: samples=64 in the backup but 48 now"),
])
def test_a_resume_that_would_continue_another_run_is_refused_and_touches_nothing(tmp_path, change, message):
    x, y = _data()
    log = CSVLogger(tmp_path / "log.csv")
    with pytest.raises(TrainingInterrupted):
        _model().fit(x, y, epochs=3, batch_size=16, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path / "backup"), log, _SigtermAt(6)])
    backups, rows = _snapshot(tmp_path / "backup"), (tmp_path / "log.csv").read_bytes()
    x, y = _data(seed=change.get("data", 3), n=change.get("data_rows", 64))
    model = _model(**change.get("model", {}))
    arguments = dict(epochs=3, batch_size=16, verbose=0, shuffle=True) | change.get("fit", {})
    with pytest.raises(ValueError, match=message) as refused:
        model.fit(x, y, callbacks=[BackupAndRestore(tmp_path / "backup"), CSVLogger(tmp_path / "log.csv")],
                  **arguments)
    assert 'on_mismatch="restart"' in str(refused.value) and "new `backup_dir`" in str(refused.value)
    assert _snapshot(tmp_path / "backup") == backups
    assert (tmp_path / "log.csv").read_bytes() == rows


def test_a_dataloader_of_other_data_is_refused_in_words(tmp_path):
    def loader(seed):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data(seed)), batch_size=16, shuffle=True)

    with pytest.raises(TrainingInterrupted):
        _model().fit(loader(3), epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path), _SigtermAt(6)])
    with pytest.raises(ValueError, match=r"would not continue this run: train data \(a DataLoader\): other values "
                                         r"\(its first samples differ\)\. Nothing was loaded"):
        _model().fit(loader(5), epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path)])


def test_on_mismatch_restart_trains_afresh(tmp_path):
    _interrupted(tmp_path / "backup", at=6)
    x, y = _data(seed=5)
    reference = _model()
    expected = reference.fit(x, y, epochs=3, batch_size=16, verbose=0)
    model = _model()
    with pytest.warns(UserWarning, match=r"on_mismatch=\"restart\".*another run \(train data `x`: other values"):
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0,
                            callbacks=[BackupAndRestore(tmp_path / "backup", on_mismatch="restart")])
    assert history.history == expected.history and _same_weights(model, reference)
    with pytest.raises(ValueError, match="`on_mismatch` must be 'raise' or 'restart'. Received: on_mismatch='ignore'"):
        BackupAndRestore(tmp_path, on_mismatch="ignore")


class _Counter(Callback):
    def __init__(self, name=None):
        super().__init__()
        self.count = 0
        if name is not None:
            self.name = name

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_callback_states_match_by_class_and_position_or_name():
    saved_from = [_Counter(), _Counter(), _Counter("probe"), EarlyStopping(patience=2)]
    for index, callback in enumerate(saved_from[:3]):
        callback.count = index + 1
    saved_from[3].on_train_begin()
    for epoch, loss in enumerate([1.0, 2.0]):
        saved_from[3].on_epoch_end(epoch, {"val_loss": loss})  # best 1.0, then one epoch without improvement
    saved = callback_states(saved_from)
    # Reordered, one added, one removed, EarlyStopping reconfigured: each takes the state that is its own.
    now = [_Counter("probe"), EarlyStopping(patience=5), _Counter(), _Counter(), _Counter()]
    note = restore_callback_states(now, saved)
    assert [cb.count for cb in (now[0], now[2], now[3], now[4])] == [3, 1, 2, 0]
    assert (now[1].wait, now[1].best, now[1].patience) == (1, 1.0, 5)
    assert note == ("Resuming with other callbacks than the backup's (the training itself is unchanged): new, "
                    "starting afresh: _Counter#3.")
    assert "no longer given, their saved state unused: _Counter 'probe'" in restore_callback_states(now[1:], saved)
