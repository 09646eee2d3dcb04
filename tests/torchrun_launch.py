"""Launching a test script under torchrun (CPU processes, gloo, 127.0.0.1 only) and collecting what it left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
LAUNCH_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(script: str, scenario: str, out: Path, *, nodes: int = 1, node_rank: int = 0, port: int | None = None,
             procs: int = 2, rendezvous: bool = False, restarts: int = 0) -> subprocess.Popen[str]:
    """Start `torchrun` on `script`; its output lines are prefixed with the rank (`[default0]:`).

    With `rendezvous`, the nodes meet through the c10d rendezvous backend (as a multi-node job launched by
    a scheduler does) instead of a fixed master address and node rank.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}
    port = port or free_port()
    where = ([f"--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=epochal-test"] if rendezvous
             else [f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}"])
    command = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", *where,
               f"--nproc_per_node={procs}", f"--max-restarts={restarts}", "--tee=3", str(TESTS / script), scenario,
               str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str], *, succeed: bool = True, timeout: float = LAUNCH_TIMEOUT) -> str:
    """Its output, once it ended (within `timeout`) with success, or with a failure when not `succeed`."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout}s:\n{output[-4000:]}")
    assert (process.returncode == 0) == succeed, output[-4000:]
    return output


def ranks(out: Path, world: int = 2) -> list[dict[str, Any]]:
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(world)]
