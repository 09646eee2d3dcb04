"""Kill a training subprocess at awkward moments, run it again: the result equals a run never interrupted.

The killed runs are subprocesses (SIGKILL leaves no chance to clean up); the resumed run is the
same code in-process. The run shuffles, uses dropout, BatchNorm, numpy and Python noise,
EarlyStopping(restore_best_weights), ReduceLROnPlateau and a per-batch cosine schedule.
"""

import os
import signal
import subprocess
import sys
import json

import pytest
import torch

import resume_child

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resume_child.py")
TOTAL_BATCHES = 50  # 5 epochs x 10 batches of 16 (160 training samples)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    state, record = resume_child.run({"backup_dir": str(tmp_path_factory.mktemp("reference") / "backup")})
    torch.use_deterministic_algorithms(False)
    assert record["batches"] == TOTAL_BATCHES
    return state, record


@pytest.fixture(scope="module")
def averaging_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("averaging")
    state, record = resume_child.run({"backup_dir": str(folder / "backup"), "averaging": True,
                                      "checkpoints": str(folder / "checkpoints")})
    torch.use_deterministic_algorithms(False)
    return state, record, _checkpoints(folder / "checkpoints")


def _checkpoints(folder):
    """The files ModelCheckpoint kept, and which one `best.json` names."""
    return sorted(os.listdir(folder)), json.loads((folder / "best.json").read_text())["file"]


def _killed_run(backup_dir, kill, expect=-signal.SIGKILL, **options):
    config = json.dumps({"backup_dir": str(backup_dir), "kill": kill, **options})
    done = subprocess.run([sys.executable, CHILD, config], capture_output=True, text=True, timeout=120)
    assert done.returncode == expect, done.stderr[-2000:]
    return done


def _assert_same_run(resumed, reference):
    (state, record), (reference_state, reference_record) = resumed, reference
    assert state.keys() == reference_state.keys()
    for name in state:
        assert torch.equal(state[name], reference_state[name]), f"`{name}` differs from the uninterrupted run"
    assert record["epoch"] == reference_record["epoch"]
    assert record["history"] == reference_record["history"]


@pytest.mark.parametrize("kill", [
    "batch:7",                   # mid-epoch, just after a backup at batch 4
    "validation:1",              # inside the second epoch's validation
    "write:3:pt",                # halfway through a backup's data file
    "write:3:json",              # halfway through a backup's manifest (the commit)
    f"batch:{TOTAL_BATCHES}",    # after the very last batch, before its validation
    "train_end",                 # after training ended, before the backup is deleted
])
def test_killed_run_resumes_exactly(tmp_path, reference, kill):
    backup = tmp_path / "backup"
    _killed_run(backup, kill)
    assert any(name.endswith(".json") for name in os.listdir(backup)), "the killed run left no committed backup"
    resumed = resume_child.run({"backup_dir": str(backup)})
    _assert_same_run(resumed, reference)
    assert resumed[1]["batches"] < TOTAL_BATCHES or kill == "train_end" and resumed[1]["batches"] == 0
    assert not backup.exists(), "the backup must be deleted once the run finishes"


@pytest.mark.parametrize("kill", [
    "validation:2",  # while EMA's average is swapped in, in SWA's first epoch (SWALR just made)
    "batch:35",      # mid-epoch, once SWA has averaged an epoch in
    "train_end",     # after EMA and SWA put their averages into the module
])
def test_killed_run_with_weight_averaging_and_checkpoint_retention_resumes_exactly(tmp_path, averaging_reference,
                                                                                  kill):
    backup, checkpoints = tmp_path / "backup", tmp_path / "checkpoints"
    _killed_run(backup, kill, averaging=True, checkpoints=str(checkpoints))
    resumed = resume_child.run({"backup_dir": str(backup), "averaging": True, "checkpoints": str(checkpoints)})
    _assert_same_run(resumed, averaging_reference[:2])
    assert _checkpoints(checkpoints) == averaging_reference[2]
    assert not backup.exists()


def test_sigterm_writes_a_backup_that_resumes_exactly(tmp_path, reference):
    backup = tmp_path / "backup"
    done = _killed_run(backup, "sigterm:13", expect=1)
    assert "TrainingInterrupted: Training stopped by SIGTERM after batch 3 of epoch 2" in done.stderr
    assert "run the same command again to resume" in done.stderr
    resumed = resume_child.run({"backup_dir": str(backup)})
    assert resumed[1]["batches"] == TOTAL_BATCHES - 13
    _assert_same_run(resumed, reference)


def test_damaged_newest_backup_falls_back_to_the_previous_one(tmp_path, reference):
    backup = tmp_path / "backup"
    _killed_run(backup, "batch:30")
    newest = max(name for name in os.listdir(backup) if name.endswith(".pt"))
    with open(backup / newest, "r+b") as handle:
        handle.seek(os.path.getsize(backup / newest) // 2)
        handle.write(b"\x00garbage\x00")
    with pytest.warns(UserWarning, match=f"{newest} is damaged .*checksum"):
        resumed = resume_child.run({"backup_dir": str(backup)})
    _assert_same_run(resumed, reference)


@pytest.fixture(scope="module")
def reference_with_steps(tmp_path_factory):
    """Epochs of 4 batches continuing through 10-batch shuffled passes: 4, 4, 2 (the pass ends), 4, 4."""
    state, record = resume_child.run({"backup_dir": str(tmp_path_factory.mktemp("reference") / "backup"),
                                      "steps_per_epoch": 4})
    torch.use_deterministic_algorithms(False)
    assert record["batches"] == 18
    return state, record


@pytest.mark.filterwarnings("ignore:`steps_per_epoch=4` does not divide")  # the short third epoch is the point
@pytest.mark.parametrize("kill, save_freq", [
    ("batch:13", 4),  # resumes from the end of epoch 2, where the first pass ended: a new pass is drawn
    ("batch:16", 4),  # resumes from the end of epoch 3, inside the second pass, whose order the backup holds
    ("batch:17", 2),  # resumes inside epoch 4, which began 4 batches into the second pass
])
def test_steps_per_epoch_resumes_where_the_data_stood(tmp_path, reference_with_steps, kill, save_freq):
    backup = tmp_path / "backup"
    _killed_run(backup, kill, steps_per_epoch=4, save_freq=save_freq)
    resumed = resume_child.run({"backup_dir": str(backup), "steps_per_epoch": 4, "save_freq": save_freq})
    _assert_same_run(resumed, reference_with_steps)
    assert resumed[1]["batches"] < 18


def test_killed_inside_a_mid_epoch_validation_resumes_exactly(tmp_path):
    """`validation_every=4` with a backup every 2 batches: the backup at batch 12 holds that point's validation
    pending; the run is killed inside it, and the resumed run validates there first, then goes on."""
    reference = resume_child.run({"backup_dir": str(tmp_path / "reference"), "validation_every": 4})
    torch.use_deterministic_algorithms(False)
    assert reference[1]["validation_steps"] == [4, 8, 10, 12, 16, 20, 24, 28, 30, 32, 36, 40, 44, 48, 50]
    backup = tmp_path / "backup"
    _killed_run(backup, "validation:1", validation_every=4, save_freq=2)
    resumed = resume_child.run({"backup_dir": str(backup), "validation_every": 4, "save_freq": 2})
    _assert_same_run(resumed, reference)
    assert resumed[1]["batches"] == TOTAL_BATCHES - 12
    for key in ("validation_steps", "validation_history"):
        assert resumed[1][key] == reference[1][key]
