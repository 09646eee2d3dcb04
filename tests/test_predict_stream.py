"""Predictions larger than memory: `predict(stream=True)` yields each batch's outputs and keeps none;
`predict_to(path)` writes safetensors shards committed by an index, atomically, and reads back equal."""

import doctest
import gc
import json
import os
import weakref

import pytest
import torch

import epochal
from epochal.callbacks import Callback
from epochal.predictions import Predictions

X = torch.randn(23, 3, generator=torch.Generator().manual_seed(0))


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(3, 4)

    def forward(self, x):
        hidden = self.body(x)
        return {"logits": hidden, "extra": (hidden.sum(1), hidden[:, :2].long())}


def model(module=None):
    torch.manual_seed(0)
    return epochal.Model(module or torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)), device="cpu")


def test_a_stream_yields_each_batch_as_asked_and_keeps_none():
    predictor = model()
    expected = predictor.predict(X, batch_size=5, verbose=0)
    events = []
    listener = epochal.callbacks.LambdaCallback(on_predict_begin=lambda logs: events.append("begin"),
                                                on_predict_end=lambda logs: events.append("end"))
    stream = predictor.predict(X, batch_size=5, verbose=0, stream=True, callbacks=[listener])
    assert events == []  # nothing runs before the first batch is asked for
    gone, sizes = [], []
    predictor.module.train()
    for batch in stream:
        assert predictor.module.training and torch.is_grad_enabled()  # the caller's modes between batches
        sizes.append(len(batch))
        assert torch.equal(batch, expected[sum(sizes) - len(batch):sum(sizes)])  # eval mode: no dropout
        gone.append(weakref.ref(batch))
        del batch
    gc.collect()
    assert sizes == [5, 5, 5, 5, 3] and events == ["begin", "end"]
    assert all(ref() is None for ref in gone)  # the stream held on to no batch it had handed out


def test_a_stream_reads_a_dataloader_lazily():
    pulled = []

    class Logged(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, index):
            pulled.append(index)
            return X[index]

    stream = model().predict(torch.utils.data.DataLoader(Logged(), batch_size=10), verbose=0, stream=True)
    first = next(stream)  # `predict` drew the first batch to refuse empty data; no more than that
    assert first.shape == (10, 4) and len(pulled) == 10
    assert sum(len(batch) for batch in stream) == 13 and len(pulled) == 23


def test_predict_to_writes_shards_that_read_back_as_predict_returns(tmp_path):
    predictor = model(TwoHeads())
    expected = predictor.predict(X, batch_size=4, verbose=0)
    predictions = predictor.predict_to(tmp_path, X, batch_size=4, verbose=0, max_shard_size=200 / 2**30)
    index = json.loads((tmp_path / "index.json").read_text())
    assert [shard["samples"] for shard in index["shards"]] == [8, 8, 7]  # a batch is 144 bytes: 2 reach 200
    assert len(predictions) == 23 and sorted(os.listdir(tmp_path)) == sorted(
        ["index.json"] + [shard["file"] for shard in index["shards"]])
    loaded = Predictions(tmp_path).load()
    assert torch.equal(loaded["logits"], expected["logits"])
    assert isinstance(loaded["extra"], tuple) and loaded["extra"][1].dtype == torch.int64
    assert torch.equal(loaded["extra"][1], expected["extra"][1])
    assert [len(shard["logits"]) for shard in predictions] == [8, 8, 7]  # one shard at a time


def test_a_new_run_replaces_the_old_shards_and_a_failed_one_leaves_them(tmp_path):
    predictor = model()
    (tmp_path / "notes.safetensors").write_bytes(b"the user's own file")
    predictor.predict_to(tmp_path, X, batch_size=4, verbose=0, max_shard_size=1e-9)  # a shard per batch
    first = sorted(os.listdir(tmp_path))

    class Fails(Callback):
        def on_predict_batch_end(self, batch, logs=None):
            if batch == 2:
                raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError, match="killed half-way"):
        predictor.predict_to(tmp_path, X * 2, batch_size=4, verbose=0, max_shard_size=1e-9, callbacks=[Fails()])
    assert torch.equal(Predictions(tmp_path).load(), predictor.predict(X, batch_size=4, verbose=0))
    predictor.predict_to(tmp_path, X * 2, batch_size=10, verbose=0)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 3 and "notes.safetensors" in files and not set(files) & (set(first) - {"index.json",
                                                                                                 "notes.safetensors"})
    assert torch.equal(Predictions(tmp_path).load(), predictor.predict(X * 2, verbose=0))


@pytest.mark.parametrize("call, error, message", [
    (lambda m, p: m.predict(X, stream="yes"), TypeError, r"`stream` must be True or False. Received: stream='yes'"),
    (lambda m, p: m.predict(X[:0], stream=True), ValueError, r"`x` is empty"),
    (lambda m, p: m.predict_to(p / "file", X), ValueError, r"`path` must be a folder.*which is a file"),
    (lambda m, p: m.predict_to(3, X), TypeError, r"`path` must be a folder path. Received: path=3"),
    (lambda m, p: m.predict_to(p, X, max_shard_size=0), ValueError, r"Received: max_shard_size=0"),
    (lambda m, p: m.predict_to(p, X, max_shard_size="1GB"), TypeError,
     r"`max_shard_size` must be a number of GB. Received: max_shard_size='1GB'"),
    (lambda m, p: m.predict_to(p, X, batch_size=0), ValueError, r"`batch_size` must be a positive integer"),
    (lambda m, p: Predictions(p), ValueError, r"holds no predictions: its index.json is missing"),
])
def test_bad_arguments_are_refused_before_any_prediction(tmp_path, call, error, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(error, match=message):
        call(model(), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), r"'{shard}' is corrupt: its contents do not match the checksum"),
    (lambda data: data[:len(data) // 2], r"'{shard}' is not a readable safetensors file .*expected a shard written by "
                                         r"`predict_to`"),
    (None, r"'{shard}' is missing; expected a shard written by `predict_to` there"),
])
def test_a_damaged_or_missing_shard_is_refused_with_its_path(tmp_path, damage, message):
    model().predict_to(tmp_path, X, batch_size=8, verbose=0, max_shard_size=1e-9)
    shard = tmp_path / json.loads((tmp_path / "index.json").read_text())["shards"][1]["file"]
    if damage is None:
        shard.unlink()
    else:
        shard.write_bytes(damage(shard.read_bytes()))
    predictions = Predictions(tmp_path)
    with pytest.raises(ValueError, match=message.format(shard=shard)):
        predictions.load()


def test_a_damaged_index_is_refused_with_its_path(tmp_path):
    model().predict_to(tmp_path, X, batch_size=8, verbose=0)
    index = tmp_path / "index.json"
    text = index.read_text()
    index.write_text(text.replace('"samples": 23', '"samples": 32'))
    with pytest.raises(ValueError, match=f"'{index}' is corrupt: its contents do not match the checksum"):
        Predictions(tmp_path)
    index.write_text(text[:-5])
    with pytest.raises(ValueError, match=f"'{index}' is not a readable index of epochal predictions"):
        Predictions(tmp_path)


def test_docstring_example_runs():
    assert epochal.predictions.Predictions is Predictions  # a public name of the package
    assert doctest.testmod(epochal.predictions).failed == 0


class ModeSwitches(torch.nn.Sequential):
    """Counts `train(mode)` calls on itself: each walks every submodule."""

    def __init__(self):
        super().__init__(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
        self.switches = 0

    def train(self, mode=True):
        self.switches += 1
        return super().train(mode)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_predict_switches_the_module_to_eval_once_a_pass_and_a_stream_once_a_batch(jit_compile, traced):
    predictor = model(ModeSwitches())
    predictor.compile(loss="mse", jit_compile=jit_compile)
    predictor.module.train()
    expected = predictor.module.eval()(X).detach()
    predictor.module.train()
    predictor.module.switches = 0
    torch.testing.assert_close(predictor.predict(X, batch_size=5, verbose=0), expected)  # in eval mode: no dropout
    assert predictor.module.switches == 2 and predictor.module.training  # eval, then back to training
    predictor.module.switches = 0
    assert len(list(predictor.predict(X, batch_size=5, verbose=0, stream=True))) == 5
    assert predictor.module.switches == 2 * 5  # the caller's modes between batches
