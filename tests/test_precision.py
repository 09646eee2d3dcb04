"""precision="bf16-mixed" / "16-mixed": autocast on the forward pass, float32 weights, CPU included."""

import pytest
import torch

import epochal


class Recording(torch.nn.Module):
    """A small MLP that records the dtype its hidden layer computed in."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
        self.dtypes = []

    def forward(self, x):
        h = self.hidden(x)
        self.dtypes.append((self.training, h.dtype))
        return self.out(torch.relu(h))


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)])
def test_mixed_precision_runs_the_forward_pass_in_half_precision_on_cpu(precision, dtype):
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    module = Recording()
    before = [p.detach().clone() for p in module.parameters()]
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], precision=precision)
    history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
    assert {d for training, d in module.dtypes if training} == {dtype}  # every training step
    assert module.dtypes[-1] == (False, dtype)  # the last validation step (fit's shape checks are float32)
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(module.parameters(), before))
    assert all(torch.isfinite(torch.tensor(values)).all() for values in history.history.values())
    assert history.params["precision"] == precision


def test_bf16_training_stays_close_to_float32():
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    losses = {}
    for precision in ("32", "bf16-mixed"):
        torch.manual_seed(0)
        model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)),
                              device="cpu")
        model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                      precision=precision)
        torch.manual_seed(1)
        losses[precision] = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    assert losses["bf16-mixed"] == pytest.approx(losses["32"], rel=2e-2)


def test_unknown_precision_is_an_error():
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    with pytest.raises(ValueError, match=r'`precision` must be one of "32", "bf16-mixed", "16-mixed". '
                                         r"Received: precision='fp8'"):
        model.compile(optimizer="sgd", loss="mse", precision="fp8")
