"""class_weight and sample_weight: batch loss = mean of weighted per-sample losses; metrics unweighted."""

import pytest
import torch

import epochal
from epochal.callbacks import Callback


def frozen(module, loss, metrics=None):
    """A model whose optimizer never moves the weights (lr 0), so every number can be computed by hand."""
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss=loss, metrics=metrics)
    return model


class Constant(torch.nn.Module):
    """Outputs the same probabilities for every sample (a trainable bias only)."""

    def __init__(self, probabilities):
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor(probabilities))

    def forward(self, x):
        return self.p.expand(x.shape[0], -1)


class BatchLosses(Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def test_sample_weight_batch_loss_is_the_mean_of_weighted_losses_not_divided_by_their_sum():
    model = frozen(torch.nn.Linear(1, 1, bias=False), "mse", ["mse"])
    torch.nn.init.zeros_(model.module.weight)
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # squared errors 1, 4, 9, 16
    weights = torch.tensor([2.0, 0.0, 1.0, 1.0])
    spy = BatchLosses()
    history = model.fit(torch.ones(4, 1), y, batch_size=2, shuffle=False, sample_weight=weights,
                        callbacks=[spy], verbose=0)
    assert spy.losses == [pytest.approx((2 * 1 + 0 * 4) / 2), pytest.approx((9 + 16) / 2)]
    assert history.history["loss"] == [pytest.approx((2 + 0 + 9 + 16) / 4)]
    assert history.history["mse"] == [pytest.approx((1 + 4 + 9 + 16) / 4)]  # metrics unweighted


@pytest.mark.parametrize("y, loss", [
    (torch.tensor([0, 1, 2, 1]), "sparse_categorical_crossentropy"),
    (torch.tensor([[0], [1], [2], [1]]), "sparse_categorical_crossentropy"),
    (torch.eye(3)[[0, 1, 2, 1]], "categorical_crossentropy"),
], ids=["int-labels", "int-labels-n1", "one-hot"])
def test_class_weight_for_integer_and_one_hot_labels(y, loss):
    p = [0.5, 0.25, 0.25]
    model = frozen(Constant(p), loss, ["accuracy"])
    history = model.fit(torch.zeros(4, 1), y, batch_size=4, class_weight={0: 1.0, 1: 2.0, 2: 3.0}, verbose=0)
    per_sample = -torch.log(torch.tensor([0.5, 0.25, 0.25, 0.25]))
    expected = (per_sample * torch.tensor([1.0, 2.0, 3.0, 2.0])).mean().item()
    assert history.history["loss"] == [pytest.approx(expected, rel=1e-6)]
    assert history.history["accuracy"] == [pytest.approx(0.25)]  # unweighted: only sample 0 is right


def test_class_weight_for_binary_labels_rounds_the_value():
    model = frozen(Constant([0.8]), "binary_crossentropy")
    y = torch.tensor([[1.0], [0.0], [0.9]])  # 0.9 counts as class 1
    history = model.fit(torch.zeros(3, 1), y, class_weight={0: 4.0, 1: 1.0}, verbose=0)
    bce = -(y * torch.log(torch.tensor(0.8)) + (1 - y) * torch.log(torch.tensor(0.2))).squeeze(1)
    expected = (bce * torch.tensor([1.0, 4.0, 1.0])).mean().item()
    assert history.history["loss"] == [pytest.approx(expected, rel=1e-5)]


def test_class_and_sample_weights_multiply():
    model = frozen(Constant([0.5, 0.5]), "sparse_categorical_crossentropy")
    history = model.fit(torch.zeros(2, 1), torch.tensor([0, 1]), class_weight={0: 2.0, 1: 1.0},
                        sample_weight=torch.tensor([3.0, 5.0]), verbose=0)
    expected = torch.log(torch.tensor(2.0)).item() * (2 * 3 + 1 * 5) / 2
    assert history.history["loss"] == [pytest.approx(expected, rel=1e-6)]


def test_validation_keeps_the_tail_of_sample_weight_but_never_class_weight():
    model = frozen(Constant([0.5, 0.25, 0.25]), "sparse_categorical_crossentropy")
    y = torch.tensor([0, 1, 1, 2, 0, 1])
    history = model.fit(torch.zeros(6, 1), y, class_weight={0: 1.0, 1: 5.0, 2: 9.0},
                        sample_weight=torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), validation_split=0.5,
                        verbose=0)
    tail = model.evaluate(torch.zeros(3, 1), y[3:], sample_weight=torch.tensor([4.0, 5.0, 6.0]), verbose=0)
    assert history.history["val_loss"] == [pytest.approx(tail["loss"], rel=1e-6)]


def test_class_weight_with_a_dataset_weights_each_streamed_batch():
    model = frozen(Constant([0.5, 0.5]), "sparse_categorical_crossentropy")
    data = [(torch.zeros(2, 1), torch.tensor([0, 1])), (torch.zeros(1, 1), torch.tensor([1]))]
    history = model.fit_dataset(data, epochs=1, class_weight={0: 3.0, 1: 1.0}, verbose=0)
    # batch losses: mean(3, 1) * ln2 = 2 ln2 (2 samples), 1 * ln2 (1 sample)
    expected = torch.log(torch.tensor(2.0)).item() * (2 * 2 + 1 * 1) / 3
    assert history.history["loss"] == [pytest.approx(expected, rel=1e-6)]
