"""evaluate returns a dict of exact per-sample means; predict returns every output in order."""

import pytest
import torch

import epochal


def compiled(module, **kwargs):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse", **kwargs)
    return model


def test_evaluate_returns_exact_per_sample_means_as_a_dict():
    module = torch.nn.Linear(1, 1)
    x, y = torch.randn(7, 1), torch.randn(7, 1)
    model = compiled(module, metrics=["mae"])
    with torch.no_grad():
        error = module(x) - y
    result = model.evaluate(x, y, batch_size=3, verbose=0)  # batches of 3, 3, 1
    assert result == {"loss": pytest.approx(error.pow(2).mean().item(), rel=1e-6),
                      "mae": pytest.approx(error.abs().mean().item(), rel=1e-6)}
    assert type(result) is dict and all(type(v) is float for v in result.values())


def test_evaluate_with_a_single_key_still_returns_a_dict_and_honours_steps_and_sample_weight():
    model = compiled(torch.nn.Linear(1, 1, bias=False))
    torch.nn.init.zeros_(model.module.weight)
    y = torch.tensor([[1.0], [2.0], [3.0]])
    assert model.evaluate(torch.ones(3, 1), y, batch_size=1, steps=2, verbose=0) == {"loss": pytest.approx(2.5)}
    weighted = model.evaluate(torch.ones(3, 1), y, sample_weight=torch.tensor([0.0, 0.0, 3.0]), verbose=0)
    assert weighted == {"loss": pytest.approx(9.0)}


def test_evaluate_accepts_a_dataset():
    model = compiled(torch.nn.Linear(1, 1, bias=False))
    torch.nn.init.zeros_(model.module.weight)
    data = [(torch.ones(2, 1), torch.tensor([[1.0], [1.0]])), (torch.ones(1, 1), torch.tensor([[4.0]]))]
    assert model.evaluate(data, verbose=0) == {"loss": pytest.approx(6.0)}
    assert model.evaluate(data, steps=1, verbose=0) == {"loss": pytest.approx(1.0)}


def test_predict_returns_outputs_in_order_in_eval_mode_without_grad():
    module = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Dropout(0.9))
    model = compiled(module)
    x = torch.arange(10.0).unsqueeze(1)
    predicted = model.predict(x, batch_size=4, verbose=0)
    with torch.no_grad():
        expected = module[0](x)  # dropout is off in eval mode
    assert torch.equal(predicted, expected) and not predicted.requires_grad
    assert module.training


def test_predict_needs_no_compile_and_accepts_a_dataset_of_x_y_pairs():
    model = epochal.Model(torch.nn.Identity(), device="cpu")
    data = [(torch.tensor([[1.0], [2.0]]), torch.zeros(2)), (torch.tensor([[3.0]]), torch.zeros(1))]
    assert model.predict(data, verbose=0).flatten().tolist() == [1.0, 2.0, 3.0]


def test_train_on_batch_returns_the_batch_values_before_the_update():
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(module.weight)
    model = compiled(module, metrics=["mae"])
    logs = model.train_on_batch(torch.ones(2, 1), torch.tensor([3.0, 3.0]))
    assert logs == {"loss": pytest.approx(4.0), "mae": pytest.approx(2.0)}
    assert module.weight.item() != 1.0
