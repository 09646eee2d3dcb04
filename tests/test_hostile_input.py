"""Hostile input: malformed arguments end in a ValueError/TypeError/RuntimeError raised by epochal and
naming the argument — never a hang, an error from deep inside torch, or a partial file; exceptions
raised by user code (callbacks, generators, losses) come out unchanged."""

import math
import re
import os
import traceback

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import epochal
from epochal.callbacks import BackupAndRestore, Callback

SRC = os.path.join(os.path.dirname(epochal.__file__), "")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

garbage = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-2, 2), max_size=3), st.just(object()), st.just(np.int64(2)),
    st.just(torch.tensor(2)), st.just({"a": 1}),
)


def _model(outputs=1, loss="mse"):
    module = torch.nn.Linear(3, outputs)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss=loss)
    return model


def _check_clean(error, *names):
    """The error is one of ours: the documented type, raised in epochal's code, naming an argument."""
    assert isinstance(error, (ValueError, TypeError, RuntimeError)), repr(error)
    innermost = traceback.extract_tb(error.__traceback__)[-1].filename
    assert innermost.startswith(SRC), f"raised from {innermost}: {error!r}"
    assert any(re.search(rf"\b{name}\b", str(error)) for name in names), str(error)


def _outcome(call, *names):
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as error:
        _check_clean(error, *names)
        return error
    return None


X, Y = torch.randn(20, 3), torch.randn(20, 1)


@pytest.mark.parametrize("argument", ["batch_size", "epochs", "steps_per_epoch", "validation_split", "initial_epoch",
                                      "validation_freq", "verbose", "class_weight", "validation_steps",
                                      "validation_batch_size", "callbacks", "validation_data", "sample_weight",
                                      "shuffle"])
@FAST
@given(value=garbage)
def test_fit_argument_garbage_is_refused_by_name_or_accepted(argument, value):
    _outcome(lambda: _model().fit(X, Y, **{"verbose": 0, argument: value}), argument)


@FAST
@given(rows_x=st.integers(0, 6), rows_y=st.integers(0, 6), width=st.integers(0, 4), y_width=st.integers(0, 3),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool, torch.complex64, torch.uint8]),
       poison=st.sampled_from([None, math.nan, math.inf]))
def test_fit_with_malformed_arrays(rows_x, rows_y, width, y_width, dtype, poison):
    x = torch.zeros(rows_x, width, dtype=dtype)
    y = torch.zeros(rows_y, y_width) if y_width else torch.zeros(rows_y)
    if poison is not None and rows_x and width and dtype.is_floating_point:
        x[0, 0] = poison
    _outcome(lambda: _model().fit(x, y, epochs=1, batch_size=4, verbose=0), "x", "y")


@FAST
@given(x=st.one_of(garbage, st.lists(st.lists(st.floats(-2, 2), min_size=0, max_size=3), max_size=3)))
def test_evaluate_and_predict_with_garbage_x(x):
    model = _model()
    _outcome(lambda: model.evaluate(x, Y, verbose=0), "x", "y")
    _outcome(lambda: model.predict(x, verbose=0), "x")


@FAST
@given(optimizer=garbage, loss=st.one_of(garbage, st.sampled_from(["msee", "crossentropy", ""])),
       metrics=st.one_of(garbage, st.lists(garbage, max_size=2)))
def test_compile_garbage(optimizer, loss, metrics):
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    error = _outcome(lambda: model.compile(optimizer=optimizer, loss=loss, metrics=metrics),
                     "optimizer", "loss", "metrics")
    if error is None:
        _outcome(lambda: model.fit(X, Y, epochs=1, verbose=0), "loss", "metrics", "optimizer", "y")


@FAST
@given(bad=st.sampled_from([None, 3, "text", (1,), (torch.ones(2, 3),), (torch.ones(2, 3), "y"),
                            (torch.ones(2, 3), torch.ones(3, 1)), {"x": 1}]),
       at=st.integers(0, 3))
def test_a_generator_yielding_garbage_mid_epoch(bad, at):
    # Not covered yet: a later batch whose feature size differs from the first one's (e.g. (2, 4) after
    # (2, 3)) still fails inside torch's layer; only the first batch is probed.
    def stream():
        for index in range(5):
            yield bad if index == at else (torch.ones(2, 3), torch.ones(2, 1))

    _outcome(lambda: _model().fit_dataset(stream(), epochs=1, verbose=0), "dataset", "x", "y")


class Boom(Exception):
    pass


def test_user_exceptions_propagate_unchanged(tmp_path):
    boom = Boom("mine")

    def stream():
        yield torch.ones(2, 3), torch.ones(2, 1)
        raise boom

    with pytest.raises(Boom) as caught:
        _model().fit_dataset(stream(), epochs=1, verbose=0)
    assert caught.value is boom

    class Raising(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise boom

    with pytest.raises(Boom) as caught:
        _model().fit(X, Y, epochs=2, verbose=0, callbacks=[BackupAndRestore(tmp_path, save_freq=1), Raising()])
    assert caught.value is boom
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]

    def loss(y_true, y_pred):
        raise boom

    with pytest.raises(Boom) as caught:
        _model(loss=loss).fit(X, Y, epochs=1, verbose=0)
    assert caught.value is boom
