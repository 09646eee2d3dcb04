"""Logs that survive a resume: a run dies after its loggers wrote rows its last backup does not cover; the
resumed run rewinds them to the backup and writes those epochs again, so every file ends exactly as the
files of a run never interrupted — no row doubled, none lost."""

import os

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore, Callback, CSVLogger, JSONLinesLogger, TensorBoard


class Crash(Exception):
    pass


class _CrashAtEpochEnd(Callback):
    """Dies in `on_epoch_end(epoch)` after the loggers (placed before it) wrote that epoch, before its backup."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Crash(f"died at the end of epoch {epoch}")


def _run(folder, *extra):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=generator)
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="adam", loss="mse")
    loggers = [CSVLogger(folder / "log.csv"), JSONLinesLogger(folder / "log.jsonl", per_batch=True),
               TensorBoard(folder / "tb", update_freq=1)]
    model.fit(x, x.sum(1, keepdim=True), epochs=3, batch_size=16, validation_split=0.25, verbose=0,
              callbacks=[BackupAndRestore(folder / "backup", save_freq=3), *loggers, *extra])


def _scalars(log_dir):
    """Every (run, tag, step, value) in the event files, in file order: a doubled step would show twice."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = []
    for run in ("train", "validation"):
        for name in sorted(os.listdir(log_dir / run)):
            for event in EventFileLoader(str(log_dir / run / name)).Load():
                found += [(run, value.tag, event.step, value.simple_value) for value in event.summary.value]
    return sorted(found)


def test_csv_json_lines_and_tensorboard_continue_from_the_backup(tmp_path):
    pytest.importorskip("tensorboard")
    _run(tmp_path / "straight")
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        _run(crashed, _CrashAtEpochEnd(1))  # its last backup: after batch 3 of epoch 1 (save_freq=3)
    assert (crashed / "log.csv").read_text().count("\n") == 3, "the crash left epoch 1's row behind its backup"
    with pytest.warns(UserWarning, match="no longer given, their saved state unused: _CrashAtEpochEnd"):
        _run(crashed)
    for name in ("log.csv", "log.jsonl"):
        assert (crashed / name).read_text() == (tmp_path / "straight" / name).read_text(), name
    assert _scalars(crashed / "tb") == _scalars(tmp_path / "straight" / "tb")
