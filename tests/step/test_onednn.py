"""Large float32 products in `jit_compile`'s CPU graphs run in oneDNN, with the values of torch's own `mm`."""

import copy

import pytest
import torch
from torch.profiler import profile

import epochal
from epochal.step import onednn

aten = torch.ops.aten
pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@pytest.mark.parametrize("a_transposed", [False, True])
@pytest.mark.parametrize("b_transposed", [False, True])
def test_large_products_equal_torchs_mm_whatever_the_operands_strides(a_transposed, b_transposed):
    a = torch.randn(300, 128).t() if a_transposed else torch.randn(128, 300)  # the backward's transposed views
    b = torch.randn(256, 300).t() if b_transposed else torch.randn(300, 256)
    bias = torch.randn(256)
    rules = onednn.decompositions()
    torch.testing.assert_close(rules[aten.mm.default](a, b), a @ b, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(rules[aten.addmm.default](bias, a, b), torch.addmm(bias, a, b), rtol=1e-5, atol=1e-4)


def test_small_scaled_or_double_products_stay_torchs():
    rules = onednn.decompositions()
    small, double = torch.randn(8, 8), torch.randn(128, 300, dtype=torch.float64)
    assert rules[aten.mm.default](small, small) is NotImplemented
    assert rules[aten.mm.default](double, double.t()) is NotImplemented
    large = torch.randn(256, 256)
    assert rules[aten.addmm.default](torch.zeros(256), large, large, beta=0.5) is NotImplemented


@pytest.mark.slow
def test_a_compiled_step_runs_its_products_in_onednn_and_trains_as_eager():
    """The real backend, from a cold cache: the forward's and the backward's 128x256x256 products. The
    caches are switched off with the config modules' own `patch` (monkeypatch left later compiles failing
    with "enable_autograd_cache does not exist")."""
    torch._dynamo.reset()
    x, y = torch.randn(256, 256), torch.randint(0, 3, (256,))
    module = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                 torch.nn.ReLU(), torch.nn.Linear(256, 3))
    models = []
    with torch._inductor.config.patch(fx_graph_cache=False), \
            torch._functorch.config.patch(enable_autograd_cache=False):
        for jit in (False, True):
            model = epochal.Model(copy.deepcopy(module), device="cpu")
            model.compile(optimizer="sgd", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=jit)
            with profile() as trace:
                model.fit(x, y, epochs=1, batch_size=128, shuffle=False, verbose=0)
            models.append((model, {event.key for event in trace.key_averages()}))
    (eager, eager_ops), (compiled, compiled_ops) = models
    assert "epochal::onednn_mm" in compiled_ops and "epochal::onednn_mm" not in eager_ops
    for ours, theirs in zip(compiled.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
