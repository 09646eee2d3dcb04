"""EMA follows Keras's `use_ema`: the average of every step's weights, validated on, kept at the end."""

import doctest

import pytest
import torch

import epochal
from epochal.callbacks import EMA, LambdaCallback
from epochal.callbacks import ema as ema_module


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, generator=generator)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def _model(**compile_options):
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)),
                          device="cpu")
    model.compile(optimizer="sgd", loss="mse", **compile_options)
    return model


def _weights(module):
    return [p.detach().clone() for p in module.parameters()]


def test_the_average_is_keras_formula_over_every_step_and_replaces_the_weights_at_the_end():
    x, y = _data()
    model = _model()
    steps = []
    record = LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(_weights(model.module)))
    ema = EMA(decay=0.8)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[record, ema])
    expected = steps[0]  # Keras: the first step sets the average to the weights
    for weights in steps[1:]:
        expected = [0.8 * average + 0.2 * w for average, w in zip(expected, weights)]
    assert ema.updates == len(steps) == 6
    for parameter, average in zip(model.module.parameters(), expected):
        torch.testing.assert_close(parameter.detach(), average, rtol=1e-6, atol=1e-7)


def test_validation_uses_the_average_and_training_never_sees_it():
    x, y = _data()
    plain = _model()
    plain_history = plain.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, shuffle=False, verbose=0)
    model = _model()
    trained = []
    ema = EMA(decay=0.5)
    history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, shuffle=False, verbose=0, callbacks=[
        ema, LambdaCallback(on_epoch_end=lambda epoch, logs: trained.append(_weights(model.module)))])
    # The training weights after each validation are bit for bit those of a run without EMA.
    assert history.history["loss"] == plain_history.history["loss"]
    assert all(torch.equal(a, b) for a, b in zip(trained[-1], plain.module.parameters()))
    # The last epoch's val_loss was computed on the average, which the module now holds.
    assert model.evaluate(x[36:], y[36:], verbose=0)["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    assert history.history["val_loss"] != plain_history.history["val_loss"]


def test_validate_with_average_false_validates_on_the_training_weights():
    x, y = _data()
    plain = _model().fit(x, y, batch_size=16, epochs=2, validation_split=0.25, shuffle=False, verbose=0)
    history = _model().fit(x, y, batch_size=16, epochs=2, validation_split=0.25, shuffle=False, verbose=0,
                           callbacks=[EMA(decay=0.5, validate_with_average=False)])
    assert history.history == plain.history


def test_overwrite_frequency_puts_the_average_into_the_weights_every_n_batches():
    x, y = _data()
    model = _model()
    ema = EMA(decay=0.9, overwrite_frequency=2)
    seen = []

    def check(batch, logs):
        averaged = [p.detach() for p in ema.average.averaged.parameters()]
        seen.append(all(torch.equal(p, a) for p, a in zip(model.module.parameters(), averaged)))

    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
              callbacks=[ema, LambdaCallback(on_train_batch_end=check)])
    assert seen == [True, True, False, True, False, True]  # the first step copies; then every 2nd


def test_one_average_step_per_execution_is_said_aloud():
    x, y = _data()
    with pytest.warns(UserWarning, match="EMA averages once per execution"):
        _model(steps_per_execution=3).fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[ema := EMA()])
    assert ema.updates == 2


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"`decay` must be a number in \[0, 1\]. Received: decay=1.5"):
        EMA(decay=1.5)
    with pytest.raises(ValueError, match="`overwrite_frequency` must be a positive integer or None. Received: "
                                         "overwrite_frequency=0"):
        EMA(overwrite_frequency=0)
    with pytest.raises(TypeError, match="`validate_with_average` must be a bool. Received: 'yes'"):
        EMA(validate_with_average="yes")


def test_docstring_example_runs():
    assert doctest.testmod(ema_module).failed == 0
