"""`jit_compile=True`: the compiled step reaches the eager step's weights, optimizer state and logs.

Tolerance: rtol 1e-5, atol 1e-6 on weights after a few epochs (the graph reorders float32 math).
Most tests trace with torch.compile's "aot_eager" backend: the same single graph (dynamo, fullgraph,
functionalised forward + backward + update) without inductor's C++ code generation, which takes
tens of seconds on a 2-core machine. One test runs the real default backend.
"""

import copy
import warnings

import pytest
import torch

import epochal
import epochal.step.compiled
from epochal.step.cuda_graphs import GraphedStep

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_mlp():
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def fit_pair(optimizer, *, epochs=2, batch_size=16, n=70, module=None, callbacks=(), **options):
    """The same fit, eager and compiled, from the same weights and seed -> (eager, compiled) models."""
    x, y = torch.randn(n, 5), torch.randint(0, 3, (n,))
    module = module or make_mlp()
    models = []
    for jit in (False, True):
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer=optimizer(model.module.parameters()) if callable(optimizer) else optimizer,
                      loss=LOSS, metrics=["accuracy"], jit_compile=jit, **options)
        torch.manual_seed(1)
        model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=0.2, verbose=0,
                  callbacks=list(callbacks))
        models.append(model)
    return models


def assert_same_training(eager, compiled):
    for ours, theirs in zip(compiled.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for key, values in eager.history.history.items():
        assert compiled.history.history[key] == pytest.approx(values, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("optimizer", [
    "adam",
    "adamw",
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda params: torch.optim.Adam(params, lr=0.01, weight_decay=1e-2, maximize=False),
], ids=["adam", "adamw", "sgd-nesterov", "adam-l2"])
def test_compiled_fit_reaches_the_eager_weights_and_logs(traced, optimizer):
    eager, compiled = fit_pair(optimizer)
    assert_same_training(eager, compiled)
    # The optimizer state is torch's own: its eager step() could continue from it.
    state, reference = compiled.optimizer.state_dict()["state"], eager.optimizer.state_dict()["state"]
    for index in reference:
        for key, value in reference[index].items():
            torch.testing.assert_close(state[index][key].to(value), value, rtol=1e-5, atol=1e-6)


def test_short_last_batch_and_later_epochs_do_not_recompile(traced):
    # 56 training samples in batches of 16: the last is 8; 14 validation samples in one short batch.
    eager, compiled = fit_pair("adam", epochs=3)
    assert_same_training(eager, compiled)
    assert traced() == 3  # train, the warm-up's test guess (batch 16) and the validation shape (14)


def test_steps_per_execution_matches_one_step_per_call(traced):
    events = []

    class Recorder(epochal.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            events.append((batch, logs["loss"]))

    # 56 training samples, batch 8: 7 batches per epoch = executions [0-2], [3-5] and batch 6 alone.
    eager, compiled = fit_pair("adam", batch_size=8, steps_per_execution=3, callbacks=[Recorder()])
    assert_same_training(eager, compiled)
    assert [index for index, _ in events] == [2, 5, 6] * 4  # two fits (eager, compiled) x two epochs
    losses = [loss for _, loss in events]
    assert losses[:6] == pytest.approx(losses[6:], rel=1e-5)
    assert compiled.history.params["steps_per_execution"] == 3


@pytest.mark.parametrize("unroll_below, graphs", [(float("inf"), 3), (0.0, 2)], ids=["unrolled", "loop"])
def test_executions_run_unrolled_or_as_one_step_calls_with_the_same_result(traced, monkeypatch, unroll_below,
                                                                           graphs):
    """Short steps are unrolled into an execution's graph, long ones looped; both train as eager does.

    Graphs: the one-step train graph, the unrolled one (if short) and one test graph (batch 8)."""
    monkeypatch.setattr(epochal.step.compiled, "UNROLL_BELOW_SECONDS", unroll_below)
    eager, compiled = fit_pair("adam", batch_size=8, steps_per_execution=3)
    assert_same_training(eager, compiled)
    assert traced() == graphs


def test_cuda_graphs_do_nothing_off_cuda(traced, recwarn):
    """A script written for a GPU runs unchanged on the CPU: the same compiled steps, no warning."""
    x, y, module = torch.randn(70, 5), torch.randint(0, 3, (70,)), make_mlp()
    models = []
    for options in ({}, {"jit_compile": True, "cuda_graphs": True}):
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"], **options)
        torch.manual_seed(1)
        model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
        models.append(model)
    assert_same_training(*models)
    assert models[1].history.params["cuda_graphs"] is True
    assert not [w for w in recwarn if "cuda_graphs" in str(w.message)]


def test_a_step_that_cannot_be_recorded_as_a_cuda_graph_runs_directly_after_one_warning():
    """`GraphedStep` gives up on tensors off the GPU (CPU tensors here) and calls the step itself."""
    def step(param, x):
        param.add_(x)
        return param.sum()

    graphed, param = GraphedStep(step, state_arguments=1), torch.zeros(3)
    with pytest.warns(UserWarning, match="cuda_graphs: .* without a CUDA graph because some of its tensors are on cpu"):
        first = graphed(param, torch.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = graphed(param, torch.ones(3))
    assert (first.item(), second.item()) == (3.0, 6.0)
    assert "cpu" in graphed.failure


def test_learning_rate_changed_between_batches_is_used_without_recompiling(traced):
    def decay(batch, logs):
        for model in models:
            model.optimizer.param_groups[0]["lr"] *= 0.9

    models = []
    x, y = torch.randn(48, 5), torch.randint(0, 3, (48,))
    module = make_mlp()
    for jit in (False, True):
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer="sgd", loss=LOSS, jit_compile=jit)
        models[:] = [model]
        torch.manual_seed(1)
        model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                  callbacks=[epochal.callbacks.LambdaCallback(on_train_batch_begin=decay)])
        models.append(model)
    eager, compiled = models[0], models[-1]
    for ours, theirs in zip(compiled.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert traced() == 1


def test_compiled_adam_continues_from_optimizer_state_restored_at_train_begin(traced):
    """Adam's bias corrections follow the restored step count (as BackupAndRestore restores one), not
    the count the compiled step saw while warming up."""
    x, y = torch.randn(48, 5), torch.randint(0, 3, (48,))
    module = make_mlp()
    earlier = epochal.Model(copy.deepcopy(module), device="cpu")
    earlier.compile(optimizer="adam", loss=LOSS)
    earlier.fit(x, y, epochs=2, batch_size=16, verbose=0)  # 6 Adam steps
    saved = copy.deepcopy((earlier.module.state_dict(), earlier.optimizer.state_dict()))
    models = []
    for jit in (False, True):
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer="adam", loss=LOSS, jit_compile=jit)

        def restore(logs, model=model):
            weights, optimizer_state = copy.deepcopy(saved)  # load_state_dict adopts the tensors it is given
            model.module.load_state_dict(weights)
            model.optimizer.load_state_dict(optimizer_state)

        torch.manual_seed(1)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0,
                  callbacks=[epochal.callbacks.LambdaCallback(on_train_begin=restore)])
        models.append(model)
    eager, compiled = models
    for ours, theirs in zip(compiled.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert [state["step"].item() for state in compiled.optimizer.state_dict()["state"].values()] == [9.0] * 4


class DataDependent(torch.nn.Module):
    """Python control flow on a tensor's value: fullgraph compilation must fail."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(5, 3)

    def forward(self, x):
        if x.sum().item() > 1e9:
            return self.linear(x) * 2
        return self.linear(x)


@pytest.mark.parametrize("module, optimizer, reason", [
    (DataDependent(), "adam", "torch.compile failed"),
    (make_mlp(), lambda params: torch.optim.RMSprop(params), "RMSprop has no compiled update"),
])
def test_a_step_that_cannot_compile_runs_eagerly_after_one_warning(traced, module, optimizer, reason):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager, compiled = fit_pair(optimizer, module=module)
    messages = [str(w.message) for w in caught if "jit_compile" in str(w.message)]
    assert len(messages) == 1 and reason in messages[0]
    assert_same_training(eager, compiled)


def test_inductor_compiled_step_matches_eager():
    """The real backend, once: a tiny CNN, one epoch, no validation (a single graph to build).

    Its max-pool backward is inductor's own lowering on the CPU (`compiled._CPU_LOWERED`); the pool
    windows overlap (stride 1) so that gradients from several windows add up in one input."""
    torch._dynamo.reset()
    x, y = torch.randn(40, 1, 6, 6), torch.randint(0, 3, (40,))
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2, stride=1),
                                 torch.nn.Flatten(), torch.nn.Linear(18, 3))
    models = []
    for jit in (False, True):
        model = epochal.Model(copy.deepcopy(module), device="cpu")
        model.compile(optimizer="adam", loss=LOSS, jit_compile=jit)
        torch.manual_seed(1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        assert not [w for w in caught if "jit_compile" in str(w.message)]  # compiled, not fallen back
        models.append(model)
    for ours, theirs in zip(models[1].module.parameters(), models[0].module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


class TwoOptimizers(epochal.Model):
    """A custom step with two optimizers and a host read when `peek` is set (a graph break)."""

    peek = False

    def train_step(self, data):
        x, y, _ = data
        first, second = self.module[0], self.module[2]
        loss = LOSS(y, self(x))
        if self.peek and loss.item() > 1e9:  # data-dependent Python: cannot be one graph
            loss = loss * 2
        self.backward(loss, optimizer="first")
        self.apply_gradients("first")
        again = LOSS(y, self(x))  # after `first` updated its layer, as a GAN's second step does
        self.backward(again, optimizer="second")
        self.apply_gradients("second")
        return {"loss": loss, "again": again, "bias_norm": second.bias.norm() + 0 * first.bias.sum()}


def _two_optimizer_pair(peek):
    x, y, module = torch.randn(56, 5), torch.randint(0, 3, (56,)), make_mlp()
    models = []
    for jit in (False, True):
        model = TwoOptimizers(copy.deepcopy(module), device="cpu")
        model.peek = peek
        model.compile(optimizer={"first": ("adam", model.module[0]),
                                 "second": ("sgd", model.module[2])}, loss=LOSS, jit_compile=jit)
        torch.manual_seed(1)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        models.append(model)
    return models


def test_a_custom_train_step_with_two_optimizers_compiles_into_one_graph(traced):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager, compiled = _two_optimizer_pair(peek=False)
    assert not [w for w in caught if "jit_compile" in str(w.message)]
    assert traced() == 1  # one train graph (no validation), no recompilation over 14 batches
    assert_same_training(eager, compiled)


def test_a_custom_train_step_that_cannot_trace_runs_eagerly_after_one_warning_naming_why(traced):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager, compiled = _two_optimizer_pair(peek=True)
    messages = [str(w.message) for w in caught if "jit_compile" in str(w.message)]
    assert len(messages) == 1 and "torch.compile failed" in messages[0]
    for ours, theirs in zip(compiled.module.parameters(), eager.module.parameters()):
        assert torch.equal(ours, theirs)  # eager both times: the same bits
