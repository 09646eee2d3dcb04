"""SWA: the equal average of the epochs from `start_epoch`, SWALR's rates, BatchNorm recomputed at the end."""

import doctest

import pytest
import torch

import epochal
from epochal.callbacks import SWA, LambdaCallback
from epochal.callbacks import swa as swa_module


def _data():
    generator = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(64, 3, generator=generator)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def _model(*layers):
    torch.manual_seed(0)
    module = torch.nn.Sequential(*layers, torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.01), loss="mse")
    return model


def test_averages_the_epochs_from_start_epoch_while_swalr_anneals_the_rate():
    x, y = _data()
    model = _model()
    ends, rates = [], []
    record = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: rates.append(model.optimizer.param_groups[0]["lr"]),
        on_epoch_end=lambda epoch, logs: ends.append([p.detach().clone() for p in model.module.parameters()]))
    swa = SWA(start_epoch=2, lr=0.002, anneal_epochs=2)
    model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[record, swa])
    assert rates == pytest.approx([0.01, 0.01, 0.01, 0.006, 0.002, 0.002])  # cosine: half-way after one epoch
    assert swa.updates == 4
    for index, parameter in enumerate(model.module.parameters()):
        expected = torch.stack([weights[index] for weights in ends[2:]]).mean(0)
        torch.testing.assert_close(parameter.detach(), expected, rtol=1e-6, atol=1e-7)


def test_batch_norm_statistics_are_recomputed_over_the_training_data():
    x, y = _data()
    model = _model(torch.nn.BatchNorm1d(3))
    swa = SWA(start_epoch=1, lr=None)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[swa])
    norm = model.module[0]
    # The first layer's input is the data itself: a pass with momentum=None averages the 4 batch means.
    torch.testing.assert_close(norm.running_mean, x.mean(0), rtol=1e-5, atol=1e-5)
    assert int(norm.num_batches_tracked) == 4
    assert norm.momentum == 0.1 and model.module.training


def test_without_update_bn_the_statistics_stay_those_of_training():
    x, y = _data()
    model = _model(torch.nn.BatchNorm1d(3))
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[SWA(start_epoch=1, lr=None, update_bn=False)])
    assert int(model.module[0].num_batches_tracked) == 12
    assert not torch.allclose(model.module[0].running_mean, x.mean(0), atol=1e-2)


def test_a_run_that_stops_before_start_epoch_keeps_its_weights_and_says_so():
    x, y = _data()
    model = _model()
    last = []

    def stop_after_epoch_1(epoch, logs):
        model.stop_training = model.stop_training or epoch == 1

    stopper = LambdaCallback(on_epoch_end=stop_after_epoch_1)
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: last.append([p.detach().clone() for p in model.module.parameters()]))
    with pytest.warns(UserWarning, match=r"SWA: training ended before `start_epoch` \(3\)"):
        model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[record, SWA(start_epoch=3, lr=0.001), stopper])
    assert all(torch.equal(p, w) for p, w in zip(model.module.parameters(), last[-1]))


def test_update_bn_needs_the_training_data(model, attach):
    model.module = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    swa = attach(SWA(start_epoch=0, lr=None))
    with pytest.raises(RuntimeError, match=r"SWA\(update_bn=True\) recomputes BatchNorm statistics from the "
                                           "training data, which this model does not offer"):
        swa.on_train_begin()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="`start_epoch` must be a non-negative integer. Received: start_epoch=-1"):
        SWA(start_epoch=-1, lr=0.1)
    with pytest.raises(ValueError, match="`lr` must be a positive number or None. Received: lr=0"):
        SWA(start_epoch=0, lr=0)
    with pytest.raises(ValueError, match="`anneal_epochs` must be a non-negative integer. Received: anneal_epochs=1.5"):
        SWA(start_epoch=0, lr=0.1, anneal_epochs=1.5)
    with pytest.raises(ValueError, match="`anneal_strategy` must be 'cos' or 'linear'. Received: anneal_strategy='exp'"):
        SWA(start_epoch=0, lr=0.1, anneal_strategy="exp")


def test_docstring_example_runs():
    assert doctest.testmod(swa_module).failed == 0
