"""Bad arguments fail before any weight changes, naming the argument, the value and what was expected."""

import re

import pytest
import torch

import epochal

X, Y = torch.randn(6, 2), torch.randn(6, 1)


@pytest.fixture
def model():
    model = epochal.Model(torch.nn.Linear(2, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    before = [p.clone() for p in model.module.parameters()]
    yield model
    assert all(torch.equal(a, b) for a, b in zip(before, model.module.parameters())), "weights changed"


@pytest.mark.parametrize("name", ["batch_size", "epochs", "steps_per_epoch"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True, "4"])
def test_counts_must_be_positive_integers(model, name, value):
    message = re.escape(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    with pytest.raises(ValueError, match=message):
        model.fit(X, Y, verbose=0, **{name: value})


def test_x_and_y_with_different_sample_counts_name_both_counts(model):
    with pytest.raises(ValueError, match="`x` and `y` must have the same number of samples. "
                                         "Received: x has 6 samples, y has 5"):
        model.fit(X, Y[:5], verbose=0)


def test_x_and_sample_weight_with_different_sample_counts(model):
    with pytest.raises(ValueError, match="Received: x has 6 samples, sample_weight has 2"):
        model.fit(X, Y, sample_weight=torch.ones(2), verbose=0)


@pytest.mark.parametrize("x, y, message", [
    (torch.zeros(0, 2), torch.zeros(0, 1), "`x` is empty: it holds 0 samples"),
    ([], [], "`x` is empty: it holds 0 samples"),
])
def test_empty_arrays(model, x, y, message):
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, verbose=0)


def test_an_empty_dataset(model):
    with pytest.raises(ValueError, match="The training data is empty"):
        model.fit_dataset(iter([]), epochs=1, verbose=0)


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5, "0.2"])
def test_validation_split_out_of_range(model, split):
    with pytest.raises(ValueError, match=re.escape(f"`validation_split` must be in [0, 1). "
                                                   f"Received: validation_split={split!r}")):
        model.fit(X, Y, validation_split=split, verbose=0)


@pytest.mark.parametrize("validation_data, message", [
    ((X,), r"`validation_data` must be a tuple \(x_val, y_val\) .*Received: a tuple of length 1"),
    ({"x": X, "y": Y}, r"`validation_data\['x'\]` must be a tuple .*a dict as `validation_data` names several "
                       r"validation sets. Received: a Tensor"),
    ((X, Y[:4]), "`validation_data: x` and `validation_data: y` must have the same number of samples"),
    ((X, torch.zeros(6, 3)), r"`validation_data`'s y has samples of shape \(3,\), but the training `y` has \(1,\)"),
    ((torch.zeros(6, 4), Y), r"`validation_data`'s x has samples of shape \(4,\), but the training `x` has \(2,\)"),
])
def test_malformed_validation_data(model, validation_data, message):
    with pytest.raises(ValueError, match=message):
        model.fit(X, Y, validation_data=validation_data, verbose=0)


def test_unknown_names_list_the_known_ones():
    model = epochal.Model(torch.nn.Linear(2, 1), device="cpu")
    with pytest.raises(ValueError, match=r"Unknown optimizer: 'adamm'\. Known optimizers: sgd, adam, .*adamax"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match=r"Unknown loss: 'msee'\. Known losses: .*'mean_squared_error'"):
        model.compile(optimizer="sgd", loss="msee")
    with pytest.raises(ValueError, match=r"Unknown metric: 'acuracy'\. Known metrics: .*accuracy"):
        model.compile(optimizer="sgd", loss="mse", metrics=["acuracy"])


@pytest.mark.parametrize("loss, y, message", [
    ("mse", torch.zeros(6, 3), r"`y` has shape \(6, 3\) but the model's output has shape \(6, 1\)"),
    ("mse", torch.zeros(6, 1, 2), r"`y` has shape \(6, 1, 2\)"),
])
def test_y_whose_shape_cannot_match_the_output(model, loss, y, message):
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, verbose=0)


def test_sparse_labels_for_a_categorical_loss_are_refused_with_a_hint():
    model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softmax(-1)), device="cpu")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="use `sparse_categorical_crossentropy`"):
        model.fit(X, torch.tensor([0, 1, 2, 0, 1, 0]), verbose=0)


def test_errors_from_evaluate_and_predict(model):
    with pytest.raises(ValueError, match=re.escape("`batch_size` must be a positive integer. Received: batch_size=0")):
        model.evaluate(X, Y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="Received: x has 6 samples, y has 2"):
        model.evaluate(X, Y[:2], verbose=0)
    with pytest.raises(ValueError, match=re.escape("`steps` must be a positive integer. Received: steps=-1")):
        model.predict(X, steps=-1, verbose=0)


def test_verbose_and_validation_freq_values(model):
    with pytest.raises(ValueError, match=re.escape("`verbose` must be 0, 1, 2 or 'auto'. Received: verbose=3")):
        model.fit(X, Y, verbose=3)
    with pytest.raises(ValueError, match=re.escape("Received: validation_freq=0")):
        model.fit(X, Y, validation_freq=0, verbose=0)


def test_y_with_a_dataset_x_is_refused(model):
    with pytest.raises(ValueError, match="`y` must be None when `x` is a dataset"):
        model.fit([(X, Y)], Y, verbose=0)


def test_fit_dataset_counts_must_be_positive_integers(model):
    with pytest.raises(ValueError, match=re.escape("`epochs` must be a positive integer. Received: epochs=0")):
        model.fit_dataset([(X, Y)], epochs=0, verbose=0)
    with pytest.raises(ValueError, match=re.escape("Received: batches_per_epoch=1.5")):
        model.fit_dataset([(X, Y)], epochs=1, batches_per_epoch=1.5, verbose=0)
