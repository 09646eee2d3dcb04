"""`jit_compile` covers `evaluate` and `predict`: the same values as eager, short batches without recompiling.

Graphs are traced with the "aot_eager" backend (the `traced` fixture of tests/conftest.py): the same
dynamo graphs without inductor's code generation, which takes tens of seconds here.
"""

import copy

import pytest
import torch

import epochal

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)


class TwoHeads(torch.nn.Module):
    """A dict of outputs, each one row per sample."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(5, 8)
        self.logits, self.score = torch.nn.Linear(8, 3), torch.nn.Linear(8, 1)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return {"logits": self.logits(h), "score": self.score(h)}


def pair(module, jit_compile=True, **compile_options):
    """The same module (copied) in an eager and a compiled Model."""
    models = []
    for jit in (False, jit_compile):
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer="adam", jit_compile=jit, **compile_options)
        models.append(model)
    return models


def test_predict_pads_the_short_last_batch_into_the_full_batches_graph(traced):
    eager, compiled = pair(TwoHeads(), loss={"logits": LOSS, "score": "mse"})
    x = torch.randn(70, 5)  # batches of 16: the last holds 6 rows
    expected = eager.predict(x, batch_size=16, verbose=0)
    got = compiled.predict(x, batch_size=16, verbose=0)
    assert traced() == 1  # one graph, for batches of 16, took the 6-row batch too
    assert got.keys() == expected.keys() and got["logits"].shape == (70, 3)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
    assert compiled.predict(x[:9], batch_size=16, verbose=0)["score"].shape == (9, 1)
    assert traced() == 1  # a later, smaller prediction fits the same bucket


def test_evaluate_compiles_the_test_step_and_runs_the_short_batch_eagerly(traced):
    eager, compiled = pair(torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)),
                           loss=LOSS, metrics=["accuracy"])
    x, y = torch.randn(70, 5), torch.randint(0, 3, (70,))
    expected = eager.evaluate(x, y, batch_size=16, verbose=0)
    got = compiled.evaluate(x, y, batch_size=16, verbose=0)
    # The first batch ran eagerly (it names the logs), the next three in one graph, the short one eagerly.
    assert traced() == 1
    assert got == pytest.approx(expected, rel=1e-6)


def test_auto_compiles_no_short_prediction(traced):
    eager, compiled = pair(TwoHeads(), jit_compile="auto", loss={"logits": LOSS, "score": "mse"})
    x = torch.randn(40, 5)
    torch.testing.assert_close(compiled.predict(x, verbose=0), eager.predict(x, verbose=0))
    assert traced() == 0


class BatchTotal(epochal.Model):
    """A predict step whose output is not one row per sample: it cannot be padded."""

    def predict_step(self, data):
        return self(data[0]).sum(0, keepdim=True)


def test_a_predict_step_that_is_not_one_row_per_sample_runs_eagerly_after_one_warning(traced):
    module = torch.nn.Linear(5, 2)
    eager, compiled = BatchTotal(copy.deepcopy(module), device="cpu"), BatchTotal(module, device="cpu")
    eager.compile(loss="mse")
    compiled.compile(loss="mse", jit_compile=True)
    x = torch.randn(20, 5)  # batches of 8, 8 and 4
    with pytest.warns(UserWarning, match="not one row per sample, so a short batch cannot be padded"):
        got = compiled.predict(x, batch_size=8, verbose=0)
    torch.testing.assert_close(got, eager.predict(x, batch_size=8, verbose=0))


def test_predict_runs_steps_per_execution_batches_per_call_and_pads_the_rest(traced):
    eager, compiled = pair(TwoHeads(), loss={"logits": LOSS, "score": "mse"}, steps_per_execution=4)
    x = torch.randn(70, 5)  # 8 full batches of 8 (two calls of 4), then 6 rows padded into the one-batch graph
    ends = []
    record = epochal.callbacks.LambdaCallback(on_predict_batch_end=lambda batch, logs: ends.append(batch))
    got = compiled.predict(x, batch_size=8, verbose=0, callbacks=[record])
    expected = eager.predict(x, batch_size=8, verbose=0)
    assert traced() == 2  # the 4-batch graph and the one-batch graph
    assert ends == [3, 7, 8]  # one event per call, with its last batch's index (Keras)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_test_and_predict_graphs_run_without_dynamos_backward_tracing_switch(traced, monkeypatch):
    """Only a train graph calls a backward: switching `trace_autograd_ops` on around every call of an inference
    graph would cost as much as a small model's whole predict batch."""
    from torch._dynamo import config

    compiled = pair(torch.nn.Sequential(torch.nn.Linear(5, 3)), loss=LOSS, metrics=["accuracy"])[1]
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    patch, switched = type(config).patch, []

    def recording_patch(self, *args, **changes):
        switched.extend(name for name in (*args, *changes) if name == "trace_autograd_ops")
        return patch(self, *args, **changes)

    monkeypatch.setattr(type(config), "patch", recording_patch)
    compiled.predict(x, batch_size=16, verbose=0)
    compiled.evaluate(x, y, batch_size=16, verbose=0)
    assert traced() == 2 and switched == []  # the predict and the test graph, each called without the switch
    compiled.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert switched  # the train graph traces its backward under it
