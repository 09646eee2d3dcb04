"""The logs contract, frozen: which hooks fire in which order, with which indices and keys."""

import pytest
import torch

import epochal
from epochal.callbacks import Callback


class Recorder(Callback):
    """Records every hook call as (hook, index or None, sorted log keys)."""

    def __init__(self):
        super().__init__()
        self.events = []

    def _record(self, hook, index, logs):
        self.events.append((hook, index, tuple(sorted(logs or {}))))

    def on_train_begin(self, logs=None): self._record("train_begin", None, logs)
    def on_train_end(self, logs=None): self._record("train_end", None, logs)
    def on_epoch_begin(self, epoch, logs=None): self._record("epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._record("epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._record("batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._record("batch_end", batch, logs)
    def on_test_begin(self, logs=None): self._record("test_begin", None, logs)
    def on_test_end(self, logs=None): self._record("test_end", None, logs)
    def on_test_batch_begin(self, batch, logs=None): self._record("test_batch_begin", batch, logs)
    def on_test_batch_end(self, batch, logs=None): self._record("test_batch_end", batch, logs)


def compiled_model():
    model = epochal.Model(torch.nn.Linear(4, 2), device="cpu")
    model.compile(optimizer="sgd", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["acc"])
    return model


def test_fit_fires_hooks_in_keras_order_with_the_documented_keys():
    recorder = Recorder()
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    compiled_model().fit(x, y, batch_size=4, epochs=2, validation_data=(x[:3], y[:3]),
                         validation_batch_size=2, callbacks=[recorder], verbose=0)

    train_keys, epoch_keys = ("acc", "loss"), ("acc", "loss", "val_acc", "val_loss")
    one_epoch = lambda e: [  # noqa: E731
        ("epoch_begin", e, ()),
        ("batch_begin", 0, ()), ("batch_end", 0, train_keys),
        ("batch_begin", 1, ()), ("batch_end", 1, train_keys),
        ("batch_begin", 2, ()), ("batch_end", 2, train_keys),
        ("test_begin", None, ()),
        ("test_batch_begin", 0, ()), ("test_batch_end", 0, train_keys),
        ("test_batch_begin", 1, ()), ("test_batch_end", 1, train_keys),
        ("test_end", None, train_keys),
        ("epoch_end", e, epoch_keys),
    ]
    assert recorder.events == [("train_begin", None, ())] + one_epoch(0) + one_epoch(1) + [
        ("train_end", None, epoch_keys)]


def test_batch_logs_hold_the_current_batch_values_as_floats():
    seen = []
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    model = compiled_model()
    cb = epochal.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    history = model.fit(x, y, batch_size=3, epochs=1, shuffle=False, callbacks=[cb], verbose=0)
    assert all(isinstance(v, float) for logs in seen for v in logs.values())
    sizes = [3, 3, 2]
    weighted = sum(logs["loss"] * n for logs, n in zip(seen, sizes)) / 8
    assert history.history["loss"][0] == pytest.approx(weighted, rel=1e-6)


def test_logs_are_read_only_for_callbacks():
    class Vandal(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = 123.0

    with pytest.raises(TypeError):
        compiled_model().fit(torch.randn(4, 4), torch.randint(0, 2, (4,)), callbacks=[Vandal()], verbose=0)


def test_a_callback_without_batch_hooks_costs_no_batch_dispatch():
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    callbacks = epochal.callbacks.CallbackList([EpochOnly()])
    assert not callbacks.wants("on_train_batch_end") and not callbacks.wants("on_train_batch_begin")
    assert callbacks.wants("on_epoch_end")


def test_legacy_batch_hook_names_are_aliases():
    calls = []

    class Legacy(Callback):
        def on_batch_end(self, batch, logs=None):
            calls.append(batch)

    compiled_model().fit(torch.randn(6, 4), torch.randint(0, 2, (6,)), batch_size=2, callbacks=[Legacy()], verbose=0)
    assert calls == [0, 1, 2]


def test_stop_training_ends_after_the_current_batch_and_closes_the_epoch():
    recorder = Recorder()

    class StopAtSecondBatch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    history = compiled_model().fit(torch.randn(20, 4), torch.randint(0, 2, (20,)), batch_size=4, epochs=5,
                                   callbacks=[StopAtSecondBatch(), recorder], verbose=0)
    hooks = [(h, i) for h, i, _ in recorder.events]
    assert hooks == [("train_begin", None), ("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 0),
                     ("batch_begin", 1), ("batch_end", 1), ("epoch_end", 0), ("train_end", None)]
    assert history.epoch == [0]


def test_initial_epoch_past_epochs_trains_nothing_but_fires_train_hooks():
    recorder = Recorder()
    model = compiled_model()
    before = [p.clone() for p in model.module.parameters()]
    history = model.fit(torch.randn(4, 4), torch.randint(0, 2, (4,)), epochs=2, initial_epoch=2,
                        callbacks=[recorder], verbose=0)
    assert [e[0] for e in recorder.events] == ["train_begin", "train_end"]
    assert history.epoch == [] and all(torch.equal(a, b) for a, b in zip(before, model.module.parameters()))


def test_epoch_indices_run_from_initial_epoch_and_history_is_last():
    order = []

    class Peek(Callback):
        def on_epoch_end(self, epoch, logs=None):
            order.append(len(self.model.history.epoch))  # History has not recorded this epoch yet

    model = compiled_model()
    history = model.fit(torch.randn(4, 4), torch.randint(0, 2, (4,)), epochs=4, initial_epoch=1,
                        callbacks=[Peek()], verbose=0)
    assert history.epoch == [1, 2, 3] and order == [0, 1, 2]
    assert model.history is history
    assert history.params["initial_epoch"] == 1 and history.params["epochs"] == 4
