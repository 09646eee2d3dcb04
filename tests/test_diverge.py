"""`diverge`: two runs replayed batch by batch; the first batch after which their weights differ is named, with
the parameters and sizes, and with `forward=True` whether the inputs differ and which module's output first does."""

import doctest

import pytest
import torch

import epochal
from epochal.callbacks import LambdaCallback
from epochal.replay import diverge
from epochal.replay import divergence as divergence_module
from epochal.replay import forward as forward_module


class Scale(torch.nn.Module):
    """Multiplies by a constant: 1.0 changes nothing, 1 + 1e-6 is a tiny change no weight shows at first."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(48, 3, generator=generator)
    return x, x.sum(1, keepdim=True)


def _run(*, factor=1.0, lr=0.05, lr_from_epoch=None, order_seed=1, hidden=4, epochs=3):
    """A run as `diverge` takes it: trains afresh with the probe each time it is called."""
    x, y = _data()

    def train(probe):
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(3, hidden), Scale(factor), torch.nn.Linear(hidden, 1))
        model = epochal.Model(module, device="cpu")
        model.compile(optimizer=torch.optim.SGD(module.parameters(), lr=lr), loss="mse")
        change = LambdaCallback(on_epoch_begin=lambda epoch, logs: model.optimizer.param_groups[0].update(lr=lr / 10)
                                if epoch == lr_from_epoch else None)
        torch.manual_seed(order_seed)
        model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[change, probe])

    return train


def test_runs_that_train_alike_do_not_part():
    found = diverge(_run(), _run())
    assert not found.parted and found.batches == 18
    assert str(found).startswith("The runs do not part: identical weights after each of the 18 batches.")


def test_a_later_change_of_rate_parts_the_runs_at_its_first_batch_in_the_update_not_the_forward():
    found = diverge(_run(), _run(lr_from_epoch=2), forward=True)
    assert (found.at, found.batches, found.inputs_differ, found.module) == ((2, 0), 12, False, None)
    assert {difference.name for difference in found.parameters} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert [d.largest for d in found.parameters] == sorted((d.largest for d in found.parameters), reverse=True)
    assert all(0 < d.relative < 1 and d.largest > 0 for d in found.parameters)
    assert "the difference is in the backward pass or the update" in str(found)


def test_another_data_order_shows_as_other_inputs():
    found = diverge(_run(order_seed=1), _run(order_seed=2), forward=True)
    assert found.at == (0, 0) and found.inputs_differ is True
    assert found.module is not None and found.module.name == "0" and found.module.modules_alike == 0


def test_the_first_module_whose_output_differs_is_named():
    found = diverge(_run(), _run(factor=1 + 1e-6), forward=True)
    assert found.at == (0, 0) and found.inputs_differ is False
    assert (found.module.name, found.module.modules_alike) == ("1", 1)
    assert 0 < found.module.largest < 1e-4
    assert "First module whose output differs on that batch: `1`" in str(found)


def test_other_starting_weights_and_other_lengths_are_said_as_such():
    start = diverge(_run(), _run(hidden=5))
    assert start.start and start.parted and "shape (4, 3) in A, (5, 3) in B" in str(start)
    shorter = diverge(_run(), _run(epochs=2))
    assert shorter.parted and shorter.batches == 12 and "Run B stopped after 12 batches and run A went on to 18" in str(
        shorter)


def test_docstring_examples():
    assert doctest.testmod(divergence_module).failed == 0 and doctest.testmod(forward_module).failed == 0


def test_it_needs_a_run_that_trains():
    with pytest.raises(ValueError, match=r"Run A trained no batch: `run_a\(probe\)` must call `fit` with `probe`"):
        diverge(lambda probe: None, _run())


def test_under_torch_distributed_it_refuses_before_replaying(tmp_path):
    """The docs say `diverge` refuses under torchrun: one process in a process group stands for every rank."""
    replayed = []
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match=r"`diverge` replays runs in one process: call it outside "
                                               r"torch.distributed"):
            diverge(replayed.append, replayed.append)
    finally:
        torch.distributed.destroy_process_group()
    assert replayed == [], "nothing ran"
