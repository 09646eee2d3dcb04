"""stop_training, call order (compile first, no fit inside fit), compile and its optimizers."""

import pytest
import torch

import epochal
from epochal.callbacks import Callback, LambdaCallback

X, Y = torch.randn(8, 2), torch.randn(8, 1)


def compiled(module=None, optimizer="sgd"):
    model = epochal.Model(module or torch.nn.Linear(2, 1), device="cpu")
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_stop_training_from_a_batch_hook_ends_after_that_batch_and_closes_the_epoch():
    events = []

    class StopAtSecondBatch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            events.append(("batch", batch))
            if batch == 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            events.append(("epoch_end", epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            events.append(("train_end",))

    model = compiled()
    history = model.fit(X, Y, epochs=3, batch_size=2, validation_split=0.25, callbacks=[StopAtSecondBatch()],
                        verbose=0)
    assert events == [("batch", 0), ("batch", 1), ("epoch_end", 0, ["loss", "val_loss"]), ("train_end",)]
    assert history.epoch == [0]


def test_stop_training_is_reset_at_the_start_of_every_fit():
    model = compiled()
    model.fit(X, Y, epochs=2, callbacks=[LambdaCallback(on_epoch_end=lambda e, l: setattr(model, "stop_training", True))],
              verbose=0)
    assert model.stop_training
    assert model.fit(X, Y, epochs=3, verbose=0).epoch == [0, 1, 2]


def test_stop_training_set_before_fit_is_cleared_after_on_train_begin():
    model = compiled()
    model.stop_training = True
    assert model.fit(X, Y, epochs=2, verbose=0).epoch == [0, 1]


def test_fit_inside_fit_is_a_runtime_error_that_leaves_the_outer_fit_alone():
    model = compiled()
    errors = []

    class Nested(Callback):
        def on_epoch_end(self, epoch, logs=None):
            rng = torch.get_rng_state()
            with pytest.raises(RuntimeError, match=r"`fit\(\)` was called while a `fit\(\)`") as error:
                self.model.fit(X, Y, verbose=0)
            assert torch.equal(rng, torch.get_rng_state())  # refused before shuffling anything
            errors.append(error)

    history = model.fit(X, Y, epochs=2, callbacks=[Nested()], verbose=0)
    assert len(errors) == 2
    assert model.history is history and history.epoch == [0, 1]


@pytest.mark.parametrize("verb", ["fit", "evaluate"])
def test_fit_or_evaluate_before_compile_is_a_runtime_error(verb):
    model = epochal.Model(torch.nn.Linear(2, 1), device="cpu")
    with pytest.raises(RuntimeError, match=rf"call `compile\(\)` before `{verb}\(\)`"):
        getattr(model, verb)(X, Y, verbose=0)


def test_history_is_returned_kept_on_the_model_and_attached_last():
    order = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            order.append(len(self.model.history.epoch))  # History has not recorded this epoch yet

    model = compiled()
    history = model.fit(X, Y, epochs=2, callbacks=[Spy()], verbose=0)
    assert model.history is history and order == [0, 1]


def test_model_wraps_the_module_without_copying_it():
    module = torch.nn.Linear(2, 1)
    model = compiled(module)
    model.fit(X, Y, verbose=0)
    assert model.module is module


@pytest.mark.parametrize("name, cls, lr", [
    ("sgd", epochal.optimizers.SGD, 0.01), ("Adam", epochal.optimizers.Adam, 0.001),
    ("RMSPROP", epochal.optimizers.RMSprop, 0.001), ("adagrad", epochal.optimizers.Adagrad, 0.001),
    ("adadelta", epochal.optimizers.Adadelta, 0.001), ("adamax", epochal.optimizers.Adamax, 0.001),
    ("adamw", epochal.optimizers.AdamW, 0.001), ("Nadam", epochal.optimizers.Nadam, 0.001),
    ("lion", epochal.optimizers.Lion, 0.001), ("adafactor", epochal.optimizers.Adafactor, 0.001),
    ("ftrl", epochal.optimizers.Ftrl, 0.001), ("lamb", epochal.optimizers.Lamb, 0.001),
])
def test_optimizer_names_are_keras_optimizers_with_keras_learning_rates_case_insensitively(name, cls, lr):
    model = compiled(optimizer=name)
    assert type(model.optimizer) is cls and model.optimizer.param_groups[0]["lr"] == lr


def test_an_optimizer_instance_or_a_callable():
    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    assert compiled(module, optimizer).optimizer is optimizer
    model = compiled(module, lambda params: torch.optim.Adam(params, lr=0.25))
    assert type(model.optimizer) is torch.optim.Adam and model.optimizer.param_groups[0]["lr"] == 0.25


def test_recompiling_rebuilds_the_optimizer_over_the_currently_trainable_parameters():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    model = compiled(module, "adam")
    model.fit(X, Y, verbose=0)
    module[0].requires_grad_(False)
    frozen = [p.clone() for p in module[0].parameters()]
    model.compile(optimizer="adam", loss="mse")
    assert [p for group in model.optimizer.param_groups for p in group["params"]] == list(module[1].parameters())
    assert model.optimizer.state == {}
    model.fit(X, Y, epochs=2, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, module[0].parameters()))


def test_callbacks_read_plain_floats_and_cannot_change_what_history_records():
    read = []

    class Meddler(Callback):
        def on_train_batch_end(self, batch, logs=None):
            read.append(type(logs["loss"]))

        def on_epoch_end(self, epoch, logs=None):
            with pytest.raises(TypeError):
                logs["loss"] = -1.0
            logs.copy()["loss"] = -1.0  # a copy is the callback's own

    history = compiled().fit(X, Y, epochs=2, batch_size=4, callbacks=[Meddler()], verbose=0)
    assert read == [float] * 4
    assert all(value >= 0 for value in history.history["loss"])
