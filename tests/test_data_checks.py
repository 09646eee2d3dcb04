"""Data is checked whole before training — a bad value late in the data is an error before the first
update, naming the argument, where and what was expected — and streamed batches are checked on the host
before they reach the step, naming the batch."""

import pytest
import torch

import epochal


def _model(outputs=3, loss=None):
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Linear(4, outputs), device="cpu")
    model.compile(optimizer="sgd", loss=loss or epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


X = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
Y = torch.arange(100) % 3


def _last(tensor, value):
    """`tensor` with its last sample set to `value`: far from the first batch the old check read."""
    changed = tensor.clone().to(torch.float32 if isinstance(value, float) else tensor.dtype)
    changed[-1] = value
    return changed


@pytest.mark.parametrize("x, y, fit, message", [
    (X, _last(Y, 10), {}, r"`y` holds values in \[0, 10\]: `sparse_categorical_crossentropy` expects class indices "
                          r"in \[0, 2\] \(the model's output has 3 classes\)"),
    (X, _last(Y, -1), {}, r"`y` holds values in \[-1, 2\]"),
    (X, _last(Y, 1.5), {}, r"`y` holds 1.5, which is not a whole number: .*never rounded silently"),
    (_last(X, float("nan")), Y, {}, r"`x` holds NaN or infinite values \(the first, nan, at index \(99, 0\)\).*"
                                    r"`check_finite=False`"),
    (X, _last(Y, float("inf")), {}, r"`y` holds NaN or infinite values \(the first, inf, at index 99\)"),
    (X, Y, {"sample_weight": _last(torch.ones(100), float("nan"))}, r"`sample_weight` holds NaN"),
    (X, Y, {"sample_weight": _last(torch.ones(100), -0.5)}, r"`sample_weight` must not be negative. Received: -0.5 "
                                                            r"at index 99"),
    (X, Y, {"sample_weight": torch.ones(100, 2)}, r"`sample_weight` must be 1-D, one weight per sample \(100\). "
                                                  r"Received: shape \(100, 2\)"),
    (X, Y, {"class_weight": {0: 1.0, 1: -2.0}}, r"`class_weight` weights must be finite numbers >= 0. "
                                                r"Received: class_weight\[1\]=-2.0"),
    (X, Y, {"validation_data": (_last(X[:10], float("inf")), Y[:10])}, r"validation_data: `x` holds NaN or infinite"),
    (X, _last(Y, 7), {"validation_split": 0.2}, r"validation data: `y` holds values in \[0, 7\]"),
    # bad labels in the first batch too: the range over all of `y`, not the first batch's
    (X, torch.cat([torch.tensor([10]), Y[1:-1], torch.tensor([-1])]), {}, r"^`y` holds values in \[-1, 10\]"),
])
def test_bad_values_anywhere_are_refused_before_any_update(x, y, fit, message):
    model = _model()
    before = [p.clone() for p in model.module.parameters()]
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=1, batch_size=10, verbose=0, shuffle=False, **fit)
    assert all(torch.equal(a, b) for a, b in zip(before, model.module.parameters()))


def test_check_finite_false_trains_on_non_finite_inputs():
    history = _model().fit(_last(X, float("nan")), Y, epochs=1, verbose=0, check_finite=False)
    assert history.epoch == [0]


def test_a_sample_weight_column_is_read_as_one_weight_per_sample():
    a, b = _model(), _model()
    a.fit(X, Y, epochs=1, verbose=0, shuffle=False, sample_weight=torch.linspace(0, 1, 100))
    b.fit(X, Y, epochs=1, verbose=0, shuffle=False, sample_weight=torch.linspace(0, 1, 100)[:, None])
    assert all(torch.equal(p, q) for p, q in zip(a.module.parameters(), b.module.parameters()))


@pytest.mark.parametrize("bad_batch, message", [
    ({"y": torch.full((10,), 5)}, r"batch 3 of `dataset`: `y` holds values in \[5, 5\]: .*class indices in \[0, 2\]"),
    ({"x": _last(X[:10], float("inf"))}, r"batch 3 of `dataset`: `x` holds NaN or infinite values \(the first, inf, "
                                         r"at index \(9, 0\)\)"),
    ({"w": -torch.ones(10)}, r"batch 3 of `dataset`: `sample_weight` must not be negative"),
    ({"w": torch.ones(10, 2)}, r"^batch 3 of `dataset`: `sample_weight` must be 1-D, one weight per sample \(10\)"),
])
def test_a_bad_streamed_batch_is_an_error_before_its_update(bad_batch, message):
    model = _model()
    updates = []

    class Recorder(epochal.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            updates.append(batch)

    def stream():
        for index in range(6):
            part = bad_batch if index == 3 else {}
            yield part.get("x", X[:10]), part.get("y", Y[:10]), part.get("w", torch.ones(10))

    with pytest.raises(ValueError, match=message):
        model.fit_dataset(stream(), epochs=1, verbose=0, callbacks=[Recorder()])
    assert updates == [0, 1, 2]


@pytest.mark.parametrize("first, message", [
    (torch.full((10,), 5), r"^batch 0 of `dataset`: `y` holds values in \[5, 5\]"),
    (torch.full((10,), 1.5), r"^batch 0 of `dataset`: `y` holds 1.5, which is not a whole number"),
])
def test_a_bad_first_streamed_batch_is_named_too(first, message):
    with pytest.raises(ValueError, match=message):
        _model().fit_dataset([(X[:10], first), (X[10:20], Y[10:20])], epochs=1, verbose=0)


def test_binary_and_torch_losses_say_what_targets_they_read():
    with pytest.raises(ValueError, match=r"`y` holds values in \[1, 2\]: `binary_crossentropy` expects targets in \[0, 1\]"):
        _model(1, epochal.losses.BinaryCrossentropy(from_logits=True)).fit(X, _last(torch.ones(100, 1), 2.0), verbose=0)
    with pytest.raises(ValueError, match=r"`y` holds values in \[0, 3\]: `cross_entropy_loss` expects class indices"):
        _model(3, torch.nn.CrossEntropyLoss()).fit(X, _last(Y, 3), verbose=0)
    ignored = torch.nn.CrossEntropyLoss(ignore_index=-100)
    assert _model(3, ignored).fit(X, _last(Y, -100), verbose=0).epoch == [0]  # the ignored label is no error
