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
