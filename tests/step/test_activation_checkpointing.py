"""compile(checkpoint_modules=...): chosen blocks keep only their inputs and run their forward again in the
backward; training ends with exactly the weights it has without (dropout draws the same masks)."""

import warnings
from functools import partial

import pytest
import torch

import epochal
import epochal.step.compiled
import epochal.step.inference
from epochal.step.activation_checkpointing import ActivationCheckpointing

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
X = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > X[:, 1]).long()


class Block(torch.nn.Module):
    """A residual MLP block with dropout."""

    def __init__(self, width=16, dropout=0.3):
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Dropout(dropout),
                                         torch.nn.Linear(4 * width, width))

    def forward(self, x):
        return x + self.inner(x)


class Counted(Block):
    """A Block that counts its forwards (an integer attribute: not for torch.compile)."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def net(block=Counted):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), block(), block(), torch.nn.Linear(16, 2))


class TwoSteps(epochal.Model):
    """A custom train step: two backward/apply pairs on two forwards of the same batch."""

    def train_step(self, data):
        x, y, _ = data
        for _ in range(2):
            loss = LOSS(y, self(x))
            self.backward(loss)
            self.apply_gradients()
        return {"loss": loss}


def trained(checkpoint_modules=None, kind=epochal.Model, block=Counted, **options):
    model = kind(net(block), device="cpu")
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"], checkpoint_modules=checkpoint_modules, **options)
    torch.manual_seed(1)
    history = model.fit(X, Y, batch_size=8, epochs=2, validation_split=0.2, verbose=0)
    return model, history


def assert_same_training(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    for (name, p), q in zip(model_a.module.named_parameters(), model_b.module.parameters()):
        assert torch.equal(p, q), name
    assert history_a.history == history_b.history


@pytest.mark.parametrize("chosen", [[Block], ["1", "2"], lambda module: [module[2]], ["1.inner"]],
                         ids=["by class", "by name", "by module", "a nested block"])
def test_the_same_weights_and_logs_as_without_checkpointing(chosen):
    module_of = chosen if callable(chosen) else lambda module: chosen
    plain = trained()
    model = epochal.Model(net(), device="cpu")
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"], checkpoint_modules=module_of(model.module))
    torch.manual_seed(1)
    assert_same_training(plain, (model, model.fit(X, Y, batch_size=8, epochs=2, validation_split=0.2, verbose=0)))


def test_a_custom_train_step_is_checkpointed_too():
    assert_same_training(trained(kind=TwoSteps), trained([Block], kind=TwoSteps))


def test_blocks_run_again_in_the_backward_and_only_in_training():
    model, history = trained([Block])
    block = model.module[1]
    train_batches, val_batches = 2 * 4, 2 * 1  # 32 training samples in batches of 8; 8 validation samples
    assert block.calls == 2 * train_batches + val_batches  # forward and recompute per training batch
    assert "forward" not in vars(block)  # nothing left on the module after the step
    assert [name for name, _ in model.module.named_parameters()] == [name for name, _ in net().named_parameters()]
    assert history.params["checkpoint_modules"] == ["1", "2"]
    block.calls = 0
    model.predict(X, batch_size=20, verbose=0)
    assert block.calls == 2


def test_checkpointed_blocks_keep_fewer_activations_for_the_backward():
    saved = []

    def pack(tensor):
        saved[-1] += tensor.numel() * tensor.element_size()
        return tensor

    module = torch.nn.Sequential(*[Block(64) for _ in range(4)])
    for checkpointing in (ActivationCheckpointing(module, []), ActivationCheckpointing(module, ["0", "1", "2", "3"])):
        saved.append(0)
        with checkpointing.active(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            module(torch.randn(32, 64)).sum().backward()
    assert saved[1] < saved[0] / 4  # each block keeps its input alone, not its hidden 4x activations


def test_jit_compile_traces_the_checkpointed_step():
    """aot_eager: torch.compile's graphs without inductor's C++ build. Blocks without dropout: torch cannot
    recompute random ops in a forward-and-backward graph (see test_a_compiler_failure_names_its_reason)."""
    epochal.step.compiled._COMPILE["backend"] = "aot_eager"
    torch._dynamo.reset()
    block = partial(Block, dropout=0.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "run eagerly" would be a warning
            assert_same_training(trained(jit_compile=True, block=block), trained([Block], jit_compile=True, block=block))
    finally:
        epochal.step.compiled._COMPILE.pop("backend")
        torch._dynamo.reset()


@pytest.mark.parametrize("chosen, error, message", [
    (Block, TypeError, r"`checkpoint_modules` must be a list of submodules, their names or module classes"),
    (["9"], ValueError, r"names '9', which is not a submodule. Its submodules are: 0, 1, 1.inner, 1.inner.0"),
    ([torch.nn.Linear(2, 2)], ValueError, r"holds a Linear that is not part of the model's module"),
    ([torch.nn.Conv2d], ValueError, r"holds the class Conv2d, but the module has no submodule of that class"),
    ([""], ValueError, r"names the whole module.*saves no memory"),
    (["1", "1.inner"], ValueError, r"chooses `1.inner` inside `1`, which is checkpointed whole already"),
    ([3], TypeError, r"Each entry of `checkpoint_modules` must be a submodule, its name or a module class. "
                     r"Received: 3"),
])
def test_bad_choices_are_refused_by_compile(chosen, error, message):
    model = epochal.Model(net(), device="cpu")
    with pytest.raises(error, match=message):
        model.compile(optimizer="adam", loss=LOSS, checkpoint_modules=chosen)
    assert model.optimizers == {}  # nothing was compiled


def test_a_compiler_failure_names_its_reason():
    """Inductor cannot recompute dropout inside a forward-and-backward graph: the step then runs eagerly
    (checkpointed), and the warning says why instead of "backend='inductor' raised:"."""
    from torch._dynamo.exc import BackendCompilerFailed

    reason = RuntimeError("Activation checkpoint rematerialization in `forward-loss-backward` graph does not "
                          "support RNG ops in recompute regions.\nPlease move RNG operations outside")
    failure = BackendCompilerFailed(lambda graph: graph, reason, None)
    assert epochal.step.inference.compile_failure(failure) == (
        f"torch.compile failed: BackendCompilerFailed: {str(reason).splitlines()[0]}")
