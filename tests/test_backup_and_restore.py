"""BackupAndRestore in-process: arguments, file protocol, refusals, NaN, signals, finished runs."""

import os
import signal
import warnings

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore, Callback, TerminateOnNaN
from epochal.training.preemption import TrainingInterrupted


def _data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(64, 3, generator=generator)
    return x, x.sum(1, keepdim=True)


def _model(seed=0):
    torch.manual_seed(seed)
    model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)),
                          device="cpu")
    model.compile(optimizer="adam", loss="mse")
    return model


class _At(Callback):
    """Runs `action(model)` after the `at`-th training batch (1-based, counted across epochs)."""

    def __init__(self, at, action):
        super().__init__()
        self.at, self.action, self.count = at, action, 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.at:
            self.action(self.model)


def _files(folder):
    """The backups in `folder` (not its hidden lock file)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith(".")) if os.path.isdir(folder) else []


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="`save_freq` must be 'epoch' or a positive integer. Received: save_freq=0"):
        BackupAndRestore("b", save_freq=0)
    with pytest.raises(TypeError, match="`backup_dir` must be a path"):
        BackupAndRestore(3)
    with pytest.raises(TypeError, match="`delete_checkpoint` must be a bool"):
        BackupAndRestore("b", delete_checkpoint="yes")


def test_missing_folder_is_a_fresh_start_and_a_finished_run_deletes_its_backup(tmp_path):
    x, y = _data()
    history = _model().fit(x, y, epochs=2, batch_size=16, verbose=0,
                           callbacks=[BackupAndRestore(tmp_path / "new", save_freq=3)])
    assert history.epoch == [0, 1]
    assert not (tmp_path / "new").exists()


def test_keeps_the_two_newest_committed_backups(tmp_path):
    x, y = _data()
    _model().fit(x, y, epochs=3, batch_size=16, verbose=0,
                 callbacks=[BackupAndRestore(tmp_path, save_freq=2, delete_checkpoint=False)])
    # 12 batches -> 6 batch backups, plus 3 epoch-end backups = 9 written; the last two remain.
    assert _files(tmp_path) == ["backup-00000008.json", "backup-00000008.pt",
                                "backup-00000009.json", "backup-00000009.pt"]


def test_resuming_a_finished_run_is_a_no_op(tmp_path):
    x, y = _data()
    first = _model()
    history = first.fit(x, y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False), _At(0, None)])
    again = _model(seed=1)
    counter = _At(10**9, lambda model: None)
    resumed = again.fit(x, y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False), counter])
    assert counter.count == 0
    assert resumed.history == history.history and resumed.epoch == [0, 1]
    for a, b in zip(first.module.parameters(), again.module.parameters()):
        assert torch.equal(a, b)


def test_a_resume_under_other_fit_arguments_is_refused(tmp_path):
    x, y = _data()
    stop = _At(3, lambda model: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted):
        _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[BackupAndRestore(tmp_path), stop])
    with pytest.raises(ValueError, match=r"different arguments.*batch_size=16 in the backup but 8 now"):
        _model().fit(x, y, epochs=2, batch_size=8, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path), _At(0, None)])


def test_a_different_architecture_names_the_parameter(tmp_path):
    x, y = _data()
    _model().fit(x, y, epochs=1, batch_size=16, verbose=0,
                 callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    other = epochal.Model(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)),
                          device="cpu")
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match=r"module entry `0.weight`: \(4, 3\) float32 in the backup but \(5, 3\) float32 now"):
        other.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[BackupAndRestore(tmp_path)])


def test_a_pickled_payload_is_refused_not_run(tmp_path):
    x, y = _data()
    _model().fit(x, y, epochs=1, batch_size=16, verbose=0,
                 callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    newest = tmp_path / _files(tmp_path)[-1]
    torch.save({"format": "epochal.backup", "payload": os.system}, newest)  # a pickled global
    manifest = newest.with_suffix(".json")
    import hashlib, json
    record = json.loads(manifest.read_text())
    data = newest.read_bytes()
    record.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"Refusing to load .*pickled `.*system`, which could run code"):
        _model().fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[BackupAndRestore(tmp_path)])


def test_a_non_finite_loss_never_reaches_a_backup_nor_deletes_it(tmp_path):
    x, y = _data()

    def poison(model):
        with torch.no_grad():
            model.module[0].weight.fill_(float("nan"))

    with pytest.warns(UserWarning, match="not finite"):
        _model().fit(x, y, epochs=3, batch_size=16, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path, save_freq=1), TerminateOnNaN(), _At(6, poison)])
    assert _files(tmp_path)[-1] == "backup-00000006.pt"  # 4 batches + epoch end + batch 5; batch 6 poisoned
    for sequence in (5, 6):
        state = torch.load(tmp_path / f"backup-{sequence:08d}.pt", weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["module"].values())


def test_second_signal_stops_at_once_and_handlers_are_restored(tmp_path):
    x, y = _data()
    previous = signal.getsignal(signal.SIGINT)

    def twice(model):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="Received SIGINT again: training stopped at once"):
        _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[BackupAndRestore(tmp_path), _At(2, twice)])
    assert signal.getsignal(signal.SIGINT) is previous
    assert _files(tmp_path) == []  # nothing was due yet (save_freq="epoch") and the stop was immediate


def test_one_signal_without_backup_stops_after_the_batch_with_a_clear_message():
    x, y = _data()
    stop = _At(2, lambda model: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after batch 2 of epoch 1. No BackupAndRestore"):
        _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[stop])


def test_model_checkpoint_never_writes_a_non_finite_state(tmp_path):
    from epochal.callbacks import ModelCheckpoint

    x, y = _data()

    def poison(model):
        with torch.no_grad():
            model.module[0].weight.fill_(float("nan"))

    checkpoint = ModelCheckpoint(tmp_path / "w-{epoch}.safetensors", save_weights_only=True, save_freq=4)
    with pytest.warns(UserWarning, match="ModelCheckpoint: the loss or weights are not finite"):
        _model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[checkpoint, _At(6, poison)])
    assert _files(tmp_path) == ["w-1.safetensors"]


def test_a_backup_from_two_processes_resumes_in_one_with_a_warning():
    """Rank 0 keeps rank 0's RNGs (the data order) and takes every rank's partial sums; not bit-exact."""
    from epochal.training.state import TrainingState

    def part(rng, sums, count, stateful=()):
        return {"rng": rng, "epoch_rng": rng, "accumulator": {"sums": torch.tensor(sums, dtype=torch.float64),
                                                              "count": count, "stateful": list(stateful)}}

    state = TrainingState(_model(), batch=3)  # mid-epoch, one process
    with pytest.warns(UserWarning, match=r"written by 2 process\(es\) and is resumed by 1.*not bit-identically"):
        own = state._own_part([part("rank0", [1.0, 2.0], 3), part("rank1", [4.0, 0.5], 2)])
    assert own["rng"] == own["epoch_rng"] == "rank0"
    assert torch.equal(own["accumulator"]["sums"], torch.tensor([5.0, 2.5], dtype=torch.float64))
    assert own["accumulator"]["count"] == 5
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="torchmetrics states are per process"):
        state._own_part([part("rank0", [1.0], 3, [{"values": {}}]), part("rank1", [1.0], 2)])


def test_only_rank_0_removes_a_finished_runs_backup(tmp_path):
    """Under torch.distributed rank 0 alone deletes the backups it alone wrote; another rank listing the
    folder while rank 0 removes it failed at random (a rank other than 0 is simulated here)."""
    from epochal.parallel.sync import LocalSync
    from epochal.training.state import TrainingState

    class OtherRank(LocalSync):
        rank = 1

        def main_then_wait(self, write):  # as `distributed.GroupSync` on rank 1: rank 0 writes
            pass

    x, y = _data()
    _model().fit(x, y, epochs=1, batch_size=16, verbose=0,
                 callbacks=[BackupAndRestore(tmp_path, delete_checkpoint=False)])
    written = _files(tmp_path)
    assert written
    for sync, left in ((OtherRank(), written), (LocalSync(), [])):
        TrainingState(_model(), backup=BackupAndRestore(tmp_path), finished_cleanly=True, sync=sync).finish()
        assert _files(tmp_path) == left
