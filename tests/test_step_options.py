"""The step options of compile: checked with clear errors, shown in History.params, executions exact."""

import copy

import pytest
import torch

import epochal
from epochal.data import ArrayAdapter
from epochal.step.executions import Execution, group_batches
from epochal.step.options import (
    AUTO_COMPILE_MIN_BATCHES,
    AUTO_COMPILE_MIN_BATCHES_CUDA,
    StepOptions,
)

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"jit_compile": "yes"}, r'`jit_compile` must be True, False or "auto". Received: jit_compile=\'yes\''),
    ({"jit_compile": 1}, r'`jit_compile` must be True, False or "auto". Received: jit_compile=1'),
    ({"steps_per_execution": 0}, r"`steps_per_execution` must be a positive integer. Received: steps_per_execution=0"),
    ({"cuda_graphs": True}, r"`cuda_graphs=True` replays the compiled train step, so it needs jit_compile=True or "
                            r'"auto". Received: jit_compile=False'),
])
def test_bad_step_options_are_errors(kwargs, match):
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    with pytest.raises(ValueError, match=match):
        model.compile(optimizer="sgd", loss="mse", **kwargs)


def test_cuda_graphs_must_be_a_bool():
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    with pytest.raises(TypeError, match=r"`cuda_graphs` must be True or False. Received: cuda_graphs='yes'"):
        model.compile(optimizer="sgd", loss="mse", jit_compile=True, cuda_graphs="yes")


def test_history_params_show_the_step_options():
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    model.compile(optimizer="sgd", loss="mse", precision="bf16-mixed", clipvalue=1.0)
    history = model.fit(torch.randn(8, 4), torch.randn(8, 3), verbose=0)
    assert {key: history.params[key] for key in ("jit_compile", "steps_per_execution", "cuda_graphs", "precision",
                                                  "clipnorm", "clipvalue", "global_clipnorm",
                                                  "gradient_accumulation_steps")} \
        == {"jit_compile": False, "steps_per_execution": 1, "cuda_graphs": False, "precision": "bf16-mixed",
            "clipnorm": None,
            "clipvalue": 1.0, "global_clipnorm": None, "gradient_accumulation_steps": 1}


def test_auto_compiles_only_runs_long_enough_to_repay_compilation():
    auto = StepOptions(jit_compile="auto")
    assert not auto.auto_compiles(AUTO_COMPILE_MIN_BATCHES - 1, "cpu")
    assert auto.auto_compiles(AUTO_COMPILE_MIN_BATCHES, "cpu")
    assert auto.auto_compiles(AUTO_COMPILE_MIN_BATCHES_CUDA, "cuda")
    assert not auto.auto_compiles(None, "cpu")  # a stream of unknown length: eager
    assert StepOptions(jit_compile=True).auto_compiles(1, "cpu")


def test_a_short_auto_fit_runs_eagerly_without_compiling(recwarn):
    torch._dynamo.reset()
    from torch._dynamo.utils import counters
    counters.clear()
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    model.compile(optimizer="adam", loss=LOSS, jit_compile="auto")
    model.fit(torch.randn(40, 4), torch.randint(0, 3, (40,)), epochs=2, verbose=0, validation_split=0.2)
    assert counters["stats"]["unique_graphs"] == 0
    assert not [w for w in recwarn if "jit_compile" in str(w.message)]


def test_eager_steps_per_execution_trains_exactly_as_single_steps():
    # 50 samples, batch 8: batches 0-5 of 8 and a short batch 6 of 2 -> executions [0-3], then 4, 5, 6 alone.
    x, y, w = torch.randn(50, 4), torch.randint(0, 3, (50,)), torch.rand(50)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    runs = {}
    for n in (1, 4):
        events = []
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"], steps_per_execution=n)
        torch.manual_seed(3)
        model.fit(x, y, sample_weight=w, batch_size=8, epochs=2, verbose=0, callbacks=[
            epochal.callbacks.LambdaCallback(
                on_train_batch_begin=lambda batch, logs, events=events: events.append(("begin", batch)),
                on_train_batch_end=lambda batch, logs, events=events: events.append(("end", batch)))])
        runs[n] = model, events
    (single, _), (grouped, events) = runs[1], runs[4]
    for ours, theirs in zip(grouped.module.parameters(), single.module.parameters()):
        torch.testing.assert_close(ours, theirs)
    for key, values in single.history.history.items():
        assert grouped.history.history[key] == pytest.approx(values, rel=1e-6)
    assert events[:8] == [("begin", 0), ("end", 3), ("begin", 4), ("end", 4), ("begin", 5), ("end", 5),
                          ("begin", 6), ("end", 6)]


def test_an_execution_of_gathered_batches_is_a_view_of_their_block_and_equals_stacking():
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    batches = {}
    for gather in (1, 4):
        adapter = ArrayAdapter(x, y, None, num_samples=50, batch_size=8, shuffle=True, gather_batches=gather)
        torch.manual_seed(0)
        batches[gather] = list(group_batches(iter(adapter.epoch_batches(0)), 4))
    copied, viewed = batches[1][0], batches[4][0]
    assert isinstance(viewed, Execution) and viewed.x.shape == (4, 8, 4)
    assert viewed.x._base is not None and copied.x._base is None  # one gather, no second copy
    torch.testing.assert_close(viewed.x, copied.x, rtol=0, atol=0)
    torch.testing.assert_close(viewed.y, copied.y, rtol=0, atol=0)
    for ours, theirs in zip(batches[4][1:], batches[1][1:]):  # batches 4, 5 and the short 6, alone
        torch.testing.assert_close(ours.x, theirs.x, rtol=0, atol=0)
    assert [b.x.shape[0] for b in batches[4][1:]] == [8, 8, 2]
