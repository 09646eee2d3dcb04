"""model.export writes a program that runs without the module's class, after checking it matches the module."""

import doctest
import os

import pytest
import torch

import epochal
from epochal.export import ExportCheckError, comparison, exporter


def _model(module=None):
    torch.manual_seed(0)
    model = epochal.Model(module or torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                                        torch.nn.ReLU(), torch.nn.Linear(8, 3)), device="cpu")
    model.compile(optimizer="adam", loss="mse")
    return model


class TwoInTwoOut(torch.nn.Module):
    """Inputs by name, outputs as a dict: the structures `fit` accepts must export too."""

    def __init__(self):
        super().__init__()
        self.image, self.tags = torch.nn.Linear(6, 2), torch.nn.Embedding(5, 2)

    def forward(self, image, tags):
        features = self.image(image) + self.tags(tags).sum(1)
        return {"score": features.sum(1, keepdim=True), "features": features}


class CountsCalls(torch.nn.Module):
    """Python state the exporter freezes at tracing time: the program keeps multiplying by the count it saw."""

    def __init__(self):
        super().__init__()
        self.linear, self.calls = torch.nn.Linear(4, 3), 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x) * self.calls


def test_torch_export_program_runs_on_any_batch_size_like_the_module(tmp_path):
    model = _model()
    held_out = torch.randn(70, 4)
    result = model.export(tmp_path / "model.pt2", example=torch.randn(8, 4), check_data=held_out)
    assert (result.format, result.checked_batches, result.checked_samples) == ("torch.export", 3, 70)
    assert result.largest_difference <= 1e-5
    program = torch.export.load(tmp_path / "model.pt2").module()
    model.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(program(held_out[:5]), model.module(held_out[:5]))
    model.module.train()
    model.export(tmp_path / "again.pt2", example=torch.randn(8, 4))
    assert model.module.training  # exported in eval mode, then given back its own mode


def test_dict_inputs_and_outputs_export_with_a_shared_batch_dimension(tmp_path):
    model = _model(TwoInTwoOut())
    example = {"image": torch.randn(4, 6), "tags": torch.randint(0, 5, (4, 3))}
    result = model.export(tmp_path / "two.pt2", example=example)
    assert result.checked_samples == 5  # the example, then its first sample alone
    outputs = torch.export.load(tmp_path / "two.pt2").module()(image=torch.randn(9, 6), tags=torch.randint(0, 5, (9, 3)))
    assert outputs["features"].shape == (9, 2)


@pytest.mark.slow  # the dynamo ONNX exporter takes seconds even for this
def test_onnx_model_is_checked_with_onnxruntime(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model()
    result = model.export(tmp_path / "model.onnx", "onnx", example=torch.randn(8, 4), check_data=torch.randn(40, 4),
                          batch_size=16)
    assert result.checked_batches == 3 and 0 < result.largest_difference <= 1e-5
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: torch.randn(3, 4).numpy()})
    assert output.shape == (3, 3)


def test_a_program_that_differs_from_the_module_is_not_written(tmp_path):
    model = _model(CountsCalls())
    with pytest.raises(ExportCheckError, match=r"the largest difference is at output 0 at \[\d+, \d+\]: module .*"
                                               r"exported .*above rtol=1e-05. Nothing was written"):
        model.export(tmp_path / "counts.pt2", example=torch.randn(4, 4), check_data=torch.randn(8, 4),
                     dynamic_batch=False)
    assert not os.listdir(tmp_path)


def test_a_fixed_batch_size_checks_whole_batches_of_the_example_size(tmp_path):
    result = _model().export(tmp_path / "fixed.pt2", example=torch.randn(4, 4), check_data=torch.randn(10, 4),
                             dynamic_batch=False)
    assert (result.checked_batches, result.checked_samples) == (2, 8)
    with pytest.raises(Exception, match="4"):
        torch.export.load(tmp_path / "fixed.pt2").module()(torch.randn(5, 4))


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"format": "tflite"}, ValueError, "`format` must be one of 'torch.export', 'onnx'. Received: format='tflite'"),
    ({"example": torch.randn(1, 4)}, ValueError, "`example` must hold at least 2 samples for a dynamic batch"),
    ({"example": torch.randn(4, 5)}, ValueError, r"The module cannot run on `example` \(shape \(4, 5\) torch.float32\)"),
    ({"example": None}, ValueError, "`example` is required"),
    ({"check_data": torch.randn(9, 3)}, ValueError, r"`check_data` must have the example's shape after the batch "
                                                    r"dimension: \(4,\). Received: \(3,\)"),
    ({"rtol": -1.0}, ValueError, "`rtol` must be a finite number >= 0. Received: rtol=-1.0"),
    ({"batch_size": 0}, ValueError, "`batch_size` must be a positive integer. Received: batch_size=0"),
])
def test_bad_arguments_are_refused_before_anything_is_exported(tmp_path, arguments, error, message):
    call = {"format": "torch.export", "example": torch.randn(4, 4), **arguments}
    with pytest.raises(error, match=message):
        _model().export(tmp_path / "model.pt2", call.pop("format"), **call)
    assert not os.listdir(tmp_path)


def test_docstring_examples_run():
    assert doctest.testmod(exporter).failed == 0 and doctest.testmod(comparison).failed == 0
