"""`epochal export RUN`: the run's best weights as a program, checked on the held-out test rows."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def run(tmp_path_factory, epochal_cli):
    root = tmp_path_factory.mktemp("runs")
    code, out = epochal_cli("train", "--data", "iris", "--epochs", "2", "--out", root, "--name", "iris", "--verbose", "0")
    assert code == 0, out
    return root / "iris"


def test_export_writes_a_checked_program_beside_the_run(run, epochal_cli):
    code, out = epochal_cli("export", run)
    assert code == 0, out
    exported, checked = out.splitlines()
    assert exported == f"Exported iris as torch.export to {run / 'model.pt2'}"
    assert checked.startswith("Checked on the 30 held-out test rows (1 batch): largest difference ")
    assert checked.endswith("of an output's largest value (limit 1e-05)")
    assert torch.export.load(run / "model.pt2").module()(torch.zeros(7, 4)).shape == (7, 3)


def test_export_onnx_writes_a_checked_model_onnxruntime_runs_on_any_batch_size(run, epochal_cli):
    onnxruntime = pytest.importorskip("onnxruntime")
    code, out = epochal_cli("export", run, "--format", "onnx")
    assert code == 0, out
    exported, checked = out.splitlines()[-2:]  # torch's ONNX exporter may print its own progress first
    assert exported == f"Exported iris as onnx to {run / 'model.onnx'}"
    assert checked.startswith("Checked on the 30 held-out test rows (1 batch): largest difference ")
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    (outputs,) = session.run(None, {session.get_inputs()[0].name: np.zeros((7, 4), np.float32)})
    assert outputs.shape == (7, 3)


def test_export_needs_a_finished_run(tmp_path, epochal_cli):
    code, out = epochal_cli("export", tmp_path)
    assert code == 1
    assert out.strip() == (f"Error: {tmp_path} holds no finished run (config.toml and best.safetensors): export "
                           "takes a folder that `epochal train` completed.")
