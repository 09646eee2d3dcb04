"""torchrun runs of tests/distributed_script.py (2 CPU processes, gloo, 127.0.0.1 only) against 1 process.

Slow (each launch imports torch in three processes): marked `slow`, so `-m "not slow"` skips them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import distributed_script as script
import pytest
import torch
import torchrun_launch as launch
from torchrun_launch import LAUNCH_TIMEOUT, finish, free_port, ranks

pytestmark = pytest.mark.slow


def torchrun(scenario: str, out: Path, **options: Any) -> subprocess.Popen[str]:
    return launch.torchrun("distributed_script.py", scenario, out, **options)


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 2-process launch on one "node" and one across two "nodes" (meeting by c10d rendezvous), side by side."""
    one, two = tmp_path_factory.mktemp("one_node"), tmp_path_factory.mktemp("two_nodes")
    port = free_port()
    processes = [torchrun("fit,stop,files,resume,options,averaging,steps,rollback_fork", one)] + [
        torchrun("fit", two, nodes=2, port=port, procs=1, rendezvous=True) for _ in range(2)]
    outputs = [finish(process) for process in processes]
    return {"one": ranks(one), "two": ranks(two), "one_dir": one, "output": outputs[0]}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    torch.set_num_threads(1)
    return script.fit("")


def assert_same_run(ran: dict[str, Any], reference: dict[str, Any]) -> None:
    for key in ("history", "second", "evaluate"):
        assert ran[key].keys() == reference[key].keys()
        for name in ran[key]:
            assert ran[key][name] == pytest.approx(reference[key][name], rel=1e-6, abs=1e-7), (key, name)
    assert ran["epoch"] == reference["epoch"]
    assert ran["params"] == reference["params"]
    for name, value in reference["state"].items():
        torch.testing.assert_close(ran["state"][name], value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ran["predict"], reference["predict"], rtol=1e-5, atol=1e-6)


def test_two_processes_train_like_one_with_the_same_global_batch(launched, reference):
    """Uneven last batches (3/2 and 1/0 samples), validation, evaluate and predict included."""
    rank0, rank1 = (result["fit"] for result in launched["one"])
    assert_same_run(rank0, reference)
    assert rank1["history"] == rank0["history"] and rank1["evaluate"] == rank0["evaluate"]
    for name, value in rank0["state"].items():
        assert torch.equal(rank1["state"][name], value)
    assert torch.equal(rank1["predict"], rank0["predict"])


@pytest.fixture(scope="module")
def one_process_options() -> dict[str, Any]:
    torch.set_num_threads(1)
    return script.options("")


@pytest.mark.parametrize("option", list(script.OPTIONS))
def test_every_compile_option_and_a_custom_step_train_like_one_process(launched, one_process_options, option):
    """Under DDP every compile option applies (none is dropped, nothing warns): 2 processes end where 1 does,
    fp32 within a relative 1e-6, bf16 within 1e-3."""
    expected = one_process_options[option]
    tolerance = 1e-3 if option == "bf16-mixed" else 1e-6
    for ran in (result["options"][option] for result in launched["one"]):
        for name, value in expected["state"].items():
            torch.testing.assert_close(ran["state"][name], value, rtol=tolerance, atol=tolerance * 1e-2)
        assert ran["history"].keys() == expected["history"].keys()
        for key, values in expected["history"].items():
            assert ran["history"][key] == pytest.approx(values, rel=tolerance * 10), key
    assert "do not apply" not in launched["output"] and "run eagerly" not in launched["output"]


def test_named_validation_sets_validation_every_max_steps_and_predict_to_match_one_process(launched):
    """Each named set is reduced exactly over both ranks' blocks; every rank validates at the same steps and
    stops at `max_steps`; `predict_to` joins both ranks' shards in sample order."""
    torch.set_num_threads(1)
    expected = script.steps("")
    for ran in (result["steps"] for result in launched["one"]):
        assert ran["validation_steps"] == expected["validation_steps"] == [3, 5, 6, 9, 10, 12]
        for records in ("history", "validation_history"):
            assert ran[records].keys() == expected[records].keys()
            for key, values in expected[records].items():
                assert ran[records][key] == pytest.approx(values, rel=1e-6, abs=1e-7), (records, key)
        for name, value in expected["state"].items():
            torch.testing.assert_close(ran["state"][name], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ran["predictions"], ran["expected"])
        torch.testing.assert_close(ran["predictions"], expected["predictions"], rtol=1e-5, atol=1e-6)


def test_two_nodes_on_one_machine_train_like_one_process(launched, reference):
    rank0, rank1 = (result["fit"] for result in launched["two"])
    assert_same_run(rank0, reference)
    assert rank1["history"] == rank0["history"]


def test_every_rank_stops_at_the_same_epoch(launched):
    """EarlyStopping, and `stop_training` set by rank 1 alone at an epoch's end and mid-epoch."""
    rank0, rank1 = (result["stop"] for result in launched["one"])
    assert rank0 == rank1
    assert rank0["early"] == [0, 1]
    assert rank0["at_epoch_end"] == [0, 1]
    assert rank0["mid_epoch"] == [0, 1] and rank0["batches"] == [0, 1, 2, 3, 0, 1]


def test_only_rank_0_writes_files_and_prints(launched):
    rank0, rank1 = (result["files"] for result in launched["one"])
    assert rank0["checkpoints_written"] == ["w-01.safetensors", "w-02.safetensors"]
    assert rank1["checkpoints_written"] == []
    assert rank0["history"] == rank1["history"]
    rows = (launched["one_dir"] / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch")  # a header and two epochs, written once
    assert rank1["final_exists_after_save"]  # save_weights returns on every rank once the file exists
    epoch_lines = [line for line in launched["output"].splitlines() if "Epoch 1/2" in line]
    assert epoch_lines and all(line.startswith("[default0]") for line in epoch_lines)


def test_a_rollback_and_a_fork_work_alike_on_every_rank(launched):
    """The ranks agree on the failed batch (its logs are the global batch's) and roll back together; a fork of
    the run's backup with nothing changed ends, on each rank, exactly where the run did."""
    rank0, rank1 = (result["rollback_fork"] for result in launched["one"])
    for ran in (rank0, rank1):
        assert [(e["kind"], e["reason"]) for e in ran["run"]["events"]] == [("rollback", "nan")] * 3
        assert ran["fork"]["history"] == ran["run"]["history"]
        assert [e["kind"] for e in ran["fork"]["events"]] == ["rollback", "fork", "rollback", "rollback"]
        for name, value in ran["run"]["state"].items():
            assert torch.equal(ran["fork"]["state"][name], value) and torch.isfinite(value).all()
    assert repr(rank0["run"]["events"]) == repr(rank1["run"]["events"])  # their losses are NaN: != themselves
    for name, value in rank0["run"]["state"].items():
        assert torch.equal(rank1["run"]["state"][name], value)


def test_weight_averaging_leaves_every_rank_with_the_same_weights(launched):
    rank0, rank1 = (result["averaging"] for result in launched["one"])
    assert rank0["updates"] == rank1["updates"] == (12, 2)  # EMA: 4 batches x 3 epochs; SWA: epochs 1 and 2
    assert rank0["history"] == rank1["history"]
    for name, tensor in rank0["state"].items():  # weights, and BatchNorm statistics averaged across ranks
        assert torch.equal(tensor, rank1["state"][name]), name


def test_a_dead_rank_is_an_error_not_a_hang(tmp_path):
    """Rank 1 (alone on "node" 1) dies mid-run; rank 0 must fail: gloo sees the peer gone, or times out."""
    started, port = time.monotonic(), free_port()
    processes = [torchrun("die", tmp_path, nodes=2, node_rank=rank, port=port, procs=1) for rank in (0, 1)]
    outputs = [finish(process, succeed=False) for process in processes]
    assert "[default0]" in outputs[0] and "Error" in outputs[0]  # rank 0's own failure, reported
    assert time.monotonic() - started < LAUNCH_TIMEOUT


def test_a_job_interrupted_twice_resumes_exactly_with_backup_and_restore(launched, tmp_path):
    """The same command, three times over one backup folder (backups every 3 batches and at epoch ends).

    1. Rank 1 alone gets SIGTERM after global batch 7: both ranks agree to stop there, rank 0 writes
       the backup, both report it. 2. Rank 1 dies (`os._exit`) after global batch 14, mid-epoch, one
       batch after a backup: the job fails, without hanging. 3. It finishes the job from batch 13.
    Weights are bit-identical and History equal to the uninterrupted run's (which needs every rank's
    own dropout RNG and partial epoch sums back), and only rank 0 wrote files.
    """
    signalled = finish(torchrun("resume_interrupted", tmp_path), succeed=False)
    # Whichever rank exits first gets its message out; torchrun may then kill the other before it prints.
    assert re.search(r"Training stopped by (SIGTERM|a signal to another process) after batch 2 of epoch 2",
                     signalled), signalled[-4000:]
    backup = tmp_path / "resume" / "backup"
    newest = json.loads(max(backup.glob("backup-*.json")).read_text())
    assert (newest["epoch"], newest["batch"]) == (1, 2)  # rank 0, never signalled itself, stopped and saved there
    assert not (tmp_path / "killed").exists()
    finish(torchrun("resume_interrupted", tmp_path), succeed=False)
    assert (tmp_path / "killed").exists()
    finish(torchrun("resume_interrupted", tmp_path))
    resumed = [result["resume_interrupted"] for result in ranks(tmp_path)]
    reference = [result["resume"] for result in launched["one"]]
    for ran, expected in zip(resumed, reference):
        assert ran["batches"] == 4 * script.RESUME_STEPS - 13
        assert ran["epoch"] == expected["epoch"] == [0, 1, 2, 3]
        assert ran["history"] == expected["history"]
        for name, value in expected["state"].items():
            assert torch.equal(ran["state"][name], value), name
    assert resumed[1]["written"] == [] and reference[1]["written"] == []
    assert {"w-03.safetensors", "w-04.safetensors"} <= set(resumed[0]["written"])
    assert any(name.startswith("backup-") and name.endswith(".json") for name in resumed[0]["written"])
    assert sorted(os.listdir(tmp_path / "resume")) == [f"w-0{epoch}.safetensors" for epoch in (1, 2, 3, 4)]
