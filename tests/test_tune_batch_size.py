"""epochal.tune.batch_size: the largest batch that trains (out-of-memory caught, or a CPU budget), then
the candidates' speed and best validation value, with the model left as it was."""

import pytest
import torch

import epochal
from epochal.tune import batch_size, largest_batch, step_memory


class MemoryWall(torch.nn.Module):
    """Runs out of memory above `wall` samples, as a GPU would; records every batch size it sees."""

    def __init__(self, wall=None):
        super().__init__()
        self.wall, self.seen = wall, []
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, x):
        self.seen.append(len(x))
        if self.wall is not None and len(x) > self.wall:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {len(x)} samples")
        return self.net(x)


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def _model(module):
    torch.manual_seed(0)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_running_out_of_memory_is_backed_off_to_the_largest_batch_that_trains():
    x, y = _data()
    model = _model(MemoryWall(wall=40))
    weights = [p.detach().clone() for p in model.module.parameters()]
    rng = torch.get_rng_state()
    result = batch_size(model, x, y, epochs=2, patience=1)
    assert result.largest == 40  # doubled to 64, then bisected between 32 and 64
    assert [trial.batch_size for trial in result.trials] == [8, 16, 32, 40]
    assert result.monitor == "val_accuracy" and result.recommended in (8, 16, 32, 40)
    assert all(trial.samples_per_second > 0 and trial.best_epoch in (0, 1) for trial in result.trials)
    assert all(torch.equal(p, w) for p, w in zip(model.module.parameters(), weights))
    assert torch.equal(torch.get_rng_state(), rng)


def test_on_cpu_the_step_must_fit_a_memory_budget_and_bigger_steps_are_never_run(monkeypatch):
    x, y = _data()
    model = _model(MemoryWall())
    for module in (step_memory, largest_batch):
        monkeypatch.setattr(module, "resident_bytes", lambda: 0)  # the budget is then the step's alone
    budget = step_memory.measure_step(model, x[:25], y[:25], None).bytes
    model.module.seen.clear()
    result = batch_size(model, x, y, sizes=[8, 16, 64], epochs=1, memory_budget=budget)
    assert result.largest == 25 and result.budget == budget
    assert [trial.batch_size for trial in result.trials] == [8, 16]
    assert max(model.module.seen) == 25  # 32, 26 and the like were predicted too big, not tried


def test_the_default_cpu_budget_is_what_the_process_holds_plus_half_of_what_is_free():
    budget = step_memory.default_budget(torch.device("cpu"))
    assert budget is None or budget > step_memory.resident_bytes() > 0
    assert step_memory.default_budget(torch.device("meta")) is None


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"validation_split": 0.0}, ValueError, r"`validation_split` must be in \(0, 1\): the trials compare validation"),
    ({"epochs": 0}, ValueError, "`epochs` must be a positive integer. Received: epochs=0"),
    ({"sizes": [8, 0]}, ValueError, r"`sizes` must hold positive integers. Received: 0 in sizes=\[8, 0\]"),
    ({"sizes": [4096]}, ValueError, r"No size in `sizes` is at most the 160 training samples"),
    ({"sizes": "8,16"}, TypeError, "`sizes` must be a non-empty list of positive integers"),
    ({"memory_budget": 0}, ValueError, "`memory_budget` must be a positive integer or None. Received: memory_budget=0"),
    ({"tolerance": 1.5}, ValueError, r"`tolerance` must be in \[0, 1\). Received: tolerance=1.5"),
])
def test_bad_arguments_are_refused_before_any_training(arguments, error, message):
    x, y = _data()
    model = _model(MemoryWall())
    with pytest.raises(error, match=message):
        batch_size(model, x, y, **arguments)
    assert model.module.seen == []


def test_the_model_must_be_compiled():
    x, y = _data()
    with pytest.raises(RuntimeError, match=r"You must call `compile\(\)` before tuning"):
        batch_size(epochal.Model(MemoryWall(), device="cpu"), x, y)
