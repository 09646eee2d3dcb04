"""Shared test setup: one thread (the CI machine has two cores) and a fixed seed per test."""

import shutil

import pytest
import torch
from interruptions import SigtermAfter


@pytest.fixture(scope="session")
def sigterm_after():
    """`sigterm_after(n)`: a callback that interrupts `fit` with SIGTERM after its n-th batch (see SigtermAfter)."""
    return SigtermAfter


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def _migrated_mlflow_database(tmp_path_factory):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables: seconds, so once per session
    return path


@pytest.fixture
def mlflow_store(tmp_path, _migrated_mlflow_database):
    """The URI of a fresh, empty SQLite tracking store in `tmp_path` (a copy of one migrated per session)."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_mlflow_database, path)
    return f"sqlite:///{path}"


@pytest.fixture
def traced(monkeypatch):
    """`jit_compile` traced with torch.compile's "aot_eager" backend (dynamo's single graph without
    inductor's C++ code generation, which takes tens of seconds on a 2-core machine), from a clean dynamo
    cache; yields the count of graphs compiled. Dynamo is imported here, not at the top: it takes seconds."""
    from torch._dynamo.utils import counters

    import epochal.step.compiled

    monkeypatch.setitem(epochal.step.compiled._COMPILE, "backend", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    yield lambda: counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
