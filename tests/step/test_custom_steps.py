"""Keras 3's overridable steps: each override trains exactly as the hand-written torch loop doing the same,
bit for bit in float32, with every compile option applying to it."""

import copy

import pytest
import torch
import torch.nn.functional as F

import epochal


def _data(n=40, features=4, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _batches(n, batch_size, epochs):
    """The batches `fit` draws: a fresh `torch.randperm` each epoch, cut in order."""
    for _ in range(epochs):
        order = torch.randperm(n)
        yield from (order[start:start + batch_size] for start in range(0, n, batch_size))


def _assert_same_weights(ours, theirs):
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def _l2(module):
    return sum((p ** 2).sum() for p in module.parameters())


class WithL2(epochal.Model):
    def compute_loss(self, x, y, y_pred, sample_weight=None):
        return F.cross_entropy(y_pred, y) + 1e-3 * _l2(self.module)


def test_compute_loss_override_trains_and_evaluates_as_a_hand_loop():
    x, y = _data()
    reference = _net()
    optimizer = _sgd(reference.parameters())
    torch.manual_seed(1)
    for index in _batches(40, 16, epochs=2):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(reference(x[index]), y[index]) + 1e-3 * _l2(reference)
        loss.backward()
        optimizer.step()

    model = WithL2(_net(), device="cpu")
    model.compile(optimizer=_sgd(model.module.parameters()), metrics=["accuracy"])  # no `loss`: compute_loss has it
    torch.manual_seed(1)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    _assert_same_weights(model.module, reference)
    assert list(history.history) == ["loss", "accuracy"]
    with torch.no_grad():
        expected = F.cross_entropy(reference(x), y) + 1e-3 * _l2(reference)
    assert model.evaluate(x, y, batch_size=40, verbose=0)["loss"] == pytest.approx(float(expected), rel=1e-6)


class Supervised(epochal.Model):
    def train_step(self, data):
        x, y, _ = data
        loss = F.cross_entropy(self(x), y)
        self.backward(loss)
        self.apply_gradients()
        return {"loss": loss, "double": 2 * loss}


def test_train_step_override_with_one_optimizer_equals_a_hand_loop():
    x, y = _data()
    reference = _net()
    optimizer = _sgd(reference.parameters())
    losses = []
    torch.manual_seed(1)
    for index in _batches(40, 16, epochs=2):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(reference(x[index]), y[index])
        loss.backward()
        optimizer.step()
        losses.append((loss.item(), len(index)))

    model = Supervised(_net(), device="cpu")
    model.compile(optimizer=_sgd(model.module.parameters()), loss="sparse_categorical_crossentropy")
    torch.manual_seed(1)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    _assert_same_weights(model.module, reference)
    first_epoch = sum(loss * size for loss, size in losses[:3]) / 40
    assert history.history["loss"][0] == pytest.approx(first_epoch, rel=1e-6)  # exact sample-weighted mean
    assert history.history["double"][0] == pytest.approx(2 * first_epoch, rel=1e-6)


class Gan(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        self.discriminator = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def _gan_losses(gan, real, noise_then_step):
    """One GAN step's losses; `noise_then_step(name, loss)` applies each update in order."""
    fake = gan.generator(torch.randn(len(real), 3))
    ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
    d_loss = (F.binary_cross_entropy_with_logits(gan.discriminator(real), ones)
              + F.binary_cross_entropy_with_logits(gan.discriminator(fake.detach()), zeros))
    noise_then_step("discriminator", d_loss)
    g_loss = F.binary_cross_entropy_with_logits(gan.discriminator(fake), ones)
    noise_then_step("generator", g_loss)
    return d_loss, g_loss


class GanModel(epochal.Model):
    def train_step(self, data):
        def update(name, loss):
            self.backward(loss, optimizer=name)
            self.apply_gradients(optimizer=name)

        d_loss, g_loss = _gan_losses(self.module, data[0], update)
        return {"d_loss": d_loss, "g_loss": g_loss}


def _gan_optimizers(gan):
    return {"generator": torch.optim.Adam(gan.generator.parameters(), lr=1e-2),
            "discriminator": torch.optim.SGD(gan.discriminator.parameters(), lr=0.05, momentum=0.5)}


def test_a_gan_with_two_optimizers_equals_a_hand_loop():
    real = torch.randn(48, 2) * 0.5 + 2.0
    reference = Gan()
    optimizers = _gan_optimizers(reference)

    def hand_update(name, loss):
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()

    torch.manual_seed(1)
    for index in _batches(48, 16, epochs=2):
        _gan_losses(reference, real[index], hand_update)

    model = GanModel(Gan(), device="cpu")
    model.compile(optimizer=_gan_optimizers(model.module))
    torch.manual_seed(1)
    history = model.fit(real, epochs=2, batch_size=16, verbose=0)  # no targets: the step needs none
    _assert_same_weights(model.module, reference)
    assert list(history.history) == ["d_loss", "g_loss"]
    with pytest.raises(AttributeError, match=r"several optimizers \(generator, discriminator\)"):
        model.optimizer  # noqa: B018


def _clip_by_norm_(params, limit):
    for p in params:
        p.grad.mul_(limit / torch.linalg.vector_norm(p.grad).clamp_min(limit))


def test_custom_step_with_accumulation_and_clipnorm_equals_a_hand_loop():
    x, y = _data(n=40)  # batches of 8: groups {0,1}, {2,3} and a last group of one batch
    reference = _net()
    optimizer = _sgd(reference.parameters())
    torch.manual_seed(1)
    batches = list(_batches(40, 8, epochs=1))
    for group in (batches[0:2], batches[2:4], batches[4:5]):
        optimizer.zero_grad(set_to_none=True)
        for index in group:
            (F.cross_entropy(reference(x[index]), y[index]) / 2).backward()
        if len(group) < 2:  # a group cut short by the end of the epoch is the mean of its batches
            for p in reference.parameters():
                p.grad.mul_(2 / len(group))
        _clip_by_norm_(reference.parameters(), 0.1)
        optimizer.step()

    model = Supervised(_net(), device="cpu")
    model.compile(optimizer=_sgd(model.module.parameters()), loss="mse", gradient_accumulation_steps=2, clipnorm=0.1)
    torch.manual_seed(1)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    _assert_same_weights(model.module, reference)


def test_custom_step_in_bf16_mixed_precision_equals_a_hand_loop_under_autocast():
    x, y = _data()
    reference = _net()
    optimizer = _sgd(reference.parameters())
    torch.manual_seed(1)
    for index in _batches(40, 16, epochs=1):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(reference(x[index]), y[index])
        loss.backward()
        optimizer.step()

    model = Supervised(_net(), device="cpu")
    model.compile(optimizer=_sgd(model.module.parameters()), loss="mse", precision="bf16-mixed")
    torch.manual_seed(1)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    _assert_same_weights(model.module, reference)


class Returning(epochal.Model):
    """A train step that updates, then returns `self.result(loss)`: bad returns must not leave an update."""

    result = staticmethod(lambda loss: {"loss": loss})

    def train_step(self, data):
        x, y, _ = data
        loss = F.cross_entropy(self(x), y)
        self.backward(loss)
        self.apply_gradients()
        return self.result(loss)


@pytest.mark.parametrize("result, error, message", [
    (lambda loss: loss, TypeError, r"`train_step` must return a mapping of log names to scalar tensors.*"
                                   r"Received: a tensor of shape \(\)"),
    (lambda loss: {"loss": loss.repeat(3)}, ValueError, r"must return scalar values: 'loss' has shape \(3,\)"),
    (lambda loss: {"loss": "low"}, TypeError, r"scalar tensors or numbers: 'loss' is a str"),
    (lambda loss: {}, ValueError, r"returned an empty mapping"),
])
def test_a_bad_train_step_result_is_an_error_and_leaves_no_update(result, error, message):
    x, y = _data()
    model = Returning(_net(), device="cpu")
    model.result = result
    model.compile(optimizer="adam", loss="mse")
    before = copy.deepcopy(model.module.state_dict())
    with pytest.raises(error, match=message):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not model.optimizer.state  # the optimizer's state is as before the step, too


class Misbehaving(epochal.Model):
    mistake = "twice"

    def train_step(self, data):
        x, y, _ = data
        loss = F.cross_entropy(self(x), y)
        if self.mistake == "twice":
            self.backward(loss)
            self.backward(loss)
        elif self.mistake == "unknown":
            self.backward(loss, optimizer="generator")
        elif self.mistake == "no apply":
            self.backward(loss)
            return {"loss": loss}
        elif self.mistake == "no backward":
            self.apply_gradients()
        self.apply_gradients()
        return {"loss": loss}


@pytest.mark.parametrize("mistake, error, message", [
    ("twice", RuntimeError, r"`backward` was called twice for optimizer 'optimizer' before `apply_gradients`"),
    ("unknown", ValueError, r"Unknown optimizer 'generator': this model's optimizers are 'optimizer'"),
    ("no apply", RuntimeError, r"`train_step` called `backward` for 'optimizer' but not `apply_gradients`"),
    ("no backward", RuntimeError, r"`apply_gradients` for optimizer 'optimizer' has no gradients to apply"),
])
def test_misusing_backward_and_apply_gradients_is_a_clear_error_before_any_update(mistake, error, message):
    x, y = _data()
    model = Misbehaving(_net(), device="cpu")
    model.mistake = mistake
    model.compile(optimizer="sgd", loss="mse")
    before = [p.clone() for p in model.module.parameters()]
    with pytest.raises(error, match=message):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.module.parameters()))


class VectorLoss(epochal.Model):
    def compute_loss(self, x, y, y_pred, sample_weight=None):
        return F.cross_entropy(y_pred, y, reduction="none")


def test_compute_loss_returning_per_sample_losses_is_an_error_before_any_update():
    x, y = _data()
    model = VectorLoss(_net(), device="cpu")
    model.compile(optimizer="sgd")
    before = [p.clone() for p in model.module.parameters()]
    with pytest.raises(ValueError, match=r"`backward` takes the batch's scalar loss. Received: a tensor of shape "
                                         r"\(16,\). Reduce it first"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.module.parameters()))


def test_bad_named_optimizers_are_refused_at_compile():
    gan = Gan()
    cases = [
        ({}, ValueError, "`optimizer` is an empty dict"),
        ({"g": "adam"}, TypeError, r"`optimizer\['g'\]` must be a torch.optim.Optimizer, or a pair"),
        ({"two words": ("adam", gan)}, ValueError, "Optimizer names must be identifiers"),
        ({"g": ("adamm", gan.generator)}, ValueError, "Unknown optimizer: 'adamm'"),
    ]
    for optimizer, error, message in cases:
        with pytest.raises(error, match=message):
            GanModel(gan, device="cpu").compile(optimizer=optimizer)


def test_an_optimizer_over_another_modules_parameters_or_shared_parameters_is_refused():
    gan = Gan()
    with pytest.raises(ValueError, match=r"The optimizer holds 4 parameter\(s\) that are not the module's \(shapes "
                                         r"\(8, 3\), \(8,\), \(2, 8\), \(2,\)\)"):
        epochal.Model(gan.discriminator, device="cpu").compile(optimizer=torch.optim.SGD(gan.generator.parameters(),
                                                                                         lr=0.1), loss="mse")
    with pytest.raises(ValueError, match=r"`generator.0.weight` belongs to two optimizers, 'a' and 'b'"):
        GanModel(gan, device="cpu").compile(optimizer={"a": ("sgd", gan), "b": ("sgd", gan.generator)})


def test_no_loss_is_refused_unless_the_model_computes_its_own():
    with pytest.raises(ValueError, match="`loss` is required"):
        epochal.Model(_net(), device="cpu").compile(optimizer="sgd")
    WithL2(_net(), device="cpu").compile(optimizer="sgd")
    gan = Gan()
    GanModel(gan, device="cpu").compile(optimizer=_gan_optimizers(gan))
