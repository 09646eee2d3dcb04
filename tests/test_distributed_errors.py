"""Joining a torchrun job: the mistakes that fail before any process group exists (fast, one process)."""

import pytest
import torch

from epochal import parallel

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_init_outside_torchrun_says_how_to_launch(monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=r"No distributed job to join.*torchrun --nproc_per_node=N"):
        parallel.init_process_group()


def test_more_nccl_processes_than_gpus_on_a_machine_is_a_clear_error(monkeypatch):
    """Two processes on a one-GPU machine: named before torch.cuda.set_device fails on a bad ordinal."""
    for name, value in {**TORCHRUN, "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("set_device was called"))
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK=1 on a machine with 1 CUDA device\(s\).*at most 1 processes"
                                           r".*backend=\"gloo\""):
        parallel.init_process_group()
