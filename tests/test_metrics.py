"""Metrics: the accuracy auto-pick, user names as History keys, torchmetrics and callables, exact means."""

import pytest
import torch
import torchmetrics

import epochal
from epochal.callbacks import Callback


class Fixed(torch.nn.Module):
    """Returns a fixed output row per sample index (x holds the index), with one dummy parameter."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.outputs[x[:, 0].long()] + 0 * self.dummy


def run(outputs, y, loss, metrics, batch_size=32):
    model = epochal.Model(Fixed(outputs), device="cpu")
    model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    x = torch.arange(len(outputs), dtype=torch.float32).unsqueeze(1)
    return model, model.fit(x, y, batch_size=batch_size, shuffle=False, verbose=0)


def test_accuracy_picks_binary_for_one_output_column():
    outputs = torch.tensor([[0.9], [0.4], [0.6], [0.1]])
    _, history = run(outputs, torch.tensor([1.0, 1.0, 0.0, 0.0]), "binary_crossentropy", ["accuracy"])
    assert history.history["accuracy"] == [0.5]


@pytest.mark.parametrize("y, loss", [
    (torch.tensor([0, 2, 1]), "sparse_categorical_crossentropy"),
    (torch.tensor([[0], [2], [1]]), "sparse_categorical_crossentropy"),
    (torch.eye(3)[[0, 2, 1]], "categorical_crossentropy"),
])
def test_accuracy_picks_sparse_or_categorical_and_acc_keeps_its_name(y, loss):
    outputs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])  # right, wrong, right
    _, history = run(outputs, y, loss, ["acc", "accuracy"])
    assert list(history.history) == ["loss", "acc", "accuracy"]
    assert history.history["acc"] == history.history["accuracy"] == [pytest.approx(2 / 3)]


def test_epoch_metric_is_the_exact_mean_over_uneven_batches_not_a_mean_of_batch_means():
    outputs = torch.tensor([[0.9], [0.9], [0.9], [0.1], [0.1]])
    y = torch.tensor([[1.0], [1.0], [1.0], [1.0], [0.0]])  # right, right, right, wrong, right
    seen = []

    class Spy(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["accuracy"])

    model = epochal.Model(Fixed(outputs), device="cpu")
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(torch.arange(5.0).unsqueeze(1), y, batch_size=4, shuffle=False, callbacks=[Spy()],
                        verbose=0)
    assert seen == [0.75, 1.0]  # batch logs hold each batch's own value
    assert history.history["accuracy"] == [pytest.approx(4 / 5)]  # not (0.75 + 1) / 2


def test_epoch_loss_is_weighted_by_batch_size_even_while_weights_change():
    sizes_and_losses = []

    class Spy(Callback):
        def on_train_batch_end(self, batch, logs=None):
            sizes_and_losses.append(logs["loss"])

    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Linear(2, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(torch.randn(7, 2), torch.randn(7, 1), batch_size=3, callbacks=[Spy()], verbose=0)
    a, b, c = sizes_and_losses
    assert history.history["loss"][0] == pytest.approx((3 * a + 3 * b + 1 * c) / 7, rel=1e-6)


def test_callables_and_torchmetrics_objects_as_metrics():
    def always_two(y_true, y_pred):
        return torch.full((y_true.shape[0],), 2.0)

    outputs = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = torch.tensor([1, 0, 0, 0])
    _, history = run(outputs, y, "sparse_categorical_crossentropy",
                     [always_two, torchmetrics.Accuracy(task="multiclass", num_classes=2)], batch_size=3)
    assert history.history["always_two"] == [2.0]
    assert history.history["multiclass_accuracy"] == [pytest.approx(0.75)]  # over the whole epoch


def test_mse_and_mae_metric_names():
    outputs = torch.tensor([[1.0], [3.0]])
    _, history = run(outputs, torch.tensor([0.0, 1.0]), "mse", ["mae", "mean_squared_error"])
    assert history.history["mae"] == [1.5]
    assert history.history["mean_squared_error"] == [2.5]


def test_a_probability_loss_on_logits_fails_on_the_first_batch_suggesting_from_logits():
    module = torch.nn.Linear(2, 3)
    before = [p.clone() for p in module.parameters()]
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = torch.tensor([[5.0, -5.0], [-5.0, 5.0]] * 4)
    with pytest.raises(ValueError, match="from_logits=True"):
        model.fit(x, torch.zeros(8, dtype=torch.long), verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_from_logits_loss_classes_train():
    model = epochal.Model(torch.nn.Linear(2, 3), device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(torch.randn(8, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), epochs=2, verbose=0)
    assert list(history.history) == ["loss", "accuracy"]
