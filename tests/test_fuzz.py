"""Fuzzing: generated `fit`/`evaluate`/`predict` arguments, array contents and shapes, CSVs for the CLI and
damaged files for every loader. Every case ends in success or in an epochal error (ValueError, TypeError,
RuntimeError raised by epochal's code) whose message names an argument or the file — never a raw
torch/numpy/safetensors exception, a hang or a partially written file; and a damaged file that loads
holds exactly the values that were saved.

A few hundred cases run with the suite. `EPOCHAL_FUZZ_EXAMPLES=N` sets the total (shared out by weight);
the long run is `EPOCHAL_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py`.
"""

import itertools
import json
import math
import os
import re
import shutil
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import epochal
from epochal.callbacks import BackupAndRestore, History
from epochal.cli.main import main as cli
from epochal.predictions import Predictions
from epochal.saving import load_checkpoint, load_weights, save_checkpoint, save_weights

pytestmark = pytest.mark.slow

SRC = os.path.dirname(epochal.__file__) + os.sep
TOTAL = int(os.environ.get("EPOCHAL_FUZZ_EXAMPLES", "300"))
#: Each target's share of the cases (the CLI runs a whole command per case, so it gets few).
SHARES = {"fit": 0.36, "evaluate": 0.12, "stream": 0.07, "loaders": 0.25, "predictions": 0.05, "backups": 0.06, "save": 0.05, "cli": 0.04}


_CASES = itertools.count()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A new empty folder per generated case (one `mktemp` per case grows slower as they pile up)."""
    root = tmp_path_factory.mktemp("cases")

    def make():
        folder = root / str(next(_CASES))
        folder.mkdir()
        return folder

    return make


def _settings(target):
    return settings(max_examples=max(int(TOTAL * SHARES[target]), 5), deadline=None, derandomize=TOTAL <= 300,
                    suppress_health_check=list(HealthCheck))


def _outcome(call, *, path=None):
    """Run `call`: success (None), or an epochal error naming an argument (in backticks) or `path` (returned)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
            return None
    except (ValueError, TypeError, RuntimeError) as error:
        innermost = traceback.extract_tb(error.__traceback__)[-1].filename
        assert innermost.startswith(SRC), f"raised outside epochal ({innermost}): {error!r}"
        message = str(error)
        named = re.search(r"`[^`]+`", message) or (path is not None and str(path) in message)
        assert named, f"the message names no argument or path: {message}"
        return error


# -- fit / evaluate / predict on arrays ---------------------------------------------------------------

LOSSES = {  # loss -> outputs of the module
    "mse": 1, "sparse_categorical_crossentropy": 3, "binary_crossentropy": 1, "categorical_crossentropy": 3,
    "sparse_logits": 3, "binary_logits": 1, "torch_cross_entropy": 3,
}
values = st.one_of(st.floats(-1e3, 1e3, width=32), st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 2.0, -1.0]))
labels = st.one_of(st.integers(-2, 5), st.sampled_from([0.5, math.nan, 1e9]))


def _array(draw, rows, elements, *, width=None):
    shape = (rows,) if width is None else (rows, width)
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_]))
    array = draw(hnp.arrays(np.float64, shape, elements=elements))
    with np.errstate(invalid="ignore", over="ignore"):
        return array.astype(dtype) if dtype is np.float32 or dtype is np.float64 or np.isfinite(array).all() else array


@st.composite
def fit_cases(draw):
    rows = draw(st.integers(0, 12))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    x = _array(draw, rows, values, width=draw(st.integers(0, 4)))
    y_width = draw(st.sampled_from([None, 1, 2, 3]))
    y = _array(draw, draw(st.sampled_from([rows, rows, rows + 1])), labels, width=y_width)
    fit = {"batch_size": draw(st.sampled_from([None, 1, 4, 0, -1])), "epochs": draw(st.integers(0, 2)),
           "validation_split": draw(st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0])), "shuffle": draw(st.booleans()),
           "check_finite": draw(st.booleans()), "verbose": 0}
    if draw(st.booleans()):
        fit["sample_weight"] = _array(draw, draw(st.sampled_from([rows, rows + 1])), values,
                                      width=draw(st.sampled_from([None, 1, 2])))
    if draw(st.booleans()):
        fit["class_weight"] = draw(st.dictionaries(st.integers(-1, 4), st.one_of(values, st.just("1")), max_size=3))
    return loss, x, y, fit


def _model(loss):
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Linear(3, LOSSES[loss]), device="cpu")
    made = {"sparse_logits": epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
            "binary_logits": epochal.losses.BinaryCrossentropy(from_logits=True),
            "torch_cross_entropy": torch.nn.CrossEntropyLoss()}.get(loss, loss)
    model.compile(optimizer="sgd", loss=made, metrics=["accuracy"] if LOSSES[loss] > 1 else ["mae"])
    return model


@_settings("fit")
@given(case=fit_cases())
def test_fit_on_generated_arrays_succeeds_or_names_the_argument(case):
    loss, x, y, fit = case
    model = _model(loss)
    before = [p.clone() for p in model.module.parameters()]
    error = _outcome(lambda: model.fit(x, y, **fit))
    if error is not None:  # refused before training: nothing changed
        assert all(torch.equal(a, b) for a, b in zip(before, model.module.parameters()))


@_settings("evaluate")
@given(case=fit_cases(), steps=st.sampled_from([None, 1, 3, 0]))
def test_evaluate_and_predict_on_generated_arrays(case, steps):
    loss, x, y, fit = case
    model = _model(loss)
    batch_size = fit["batch_size"]
    _outcome(lambda: model.evaluate(x, y, batch_size=batch_size, steps=steps, verbose=0,
                                    sample_weight=fit.get("sample_weight")))
    _outcome(lambda: model.predict(x, batch_size=batch_size, steps=steps, verbose=0))


@_settings("stream")
@given(batches=st.lists(st.tuples(st.integers(1, 4), st.sampled_from([None, math.nan, math.inf]),
                                  st.sampled_from([0, 1, 2, 3, -1, 1.5])), min_size=1, max_size=5),
       check_finite=st.booleans())
def test_fit_dataset_on_generated_batches_stops_before_the_bad_one(batches, check_finite):
    model = _model("sparse_logits")
    seen = []
    record = epochal.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))

    def stream():
        for rows, poison, label in batches:
            x = torch.ones(rows, 3)
            if poison is not None:
                x[-1, -1] = poison
            yield x, torch.full((rows,), label)

    error = _outcome(lambda: model.fit_dataset(stream(), epochs=1, verbose=0, callbacks=[record],
                                               check_finite=check_finite))
    if error is not None and "batch " in str(error):
        bad = int(re.search(r"batch (\d+) of", str(error)).group(1))
        assert seen == list(range(bad)), "the bad batch never reached the step"


# -- damaged files, for every loader -------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One of each file epochal loads, from a small trained model."""
    folder = tmp_path_factory.mktemp("saved")
    model = _model("mse")
    model.fit(torch.randn(16, 3), torch.randn(16, 1), epochs=2, verbose=0,
              callbacks=[BackupAndRestore(folder / "backup", delete_checkpoint=False)])
    save_weights(model.module, folder / "w.safetensors")
    save_checkpoint(folder / "c.pt", model.module, model.optimizer, {"epoch": 1, "logs": {"loss": 0.5}})
    model.history.to_csv(folder / "h.csv")
    model.history.to_json(folder / "h.json")
    model.predict_to(folder / "preds", torch.randn(12, 3), batch_size=4, verbose=0, max_shard_size=1e-9)
    return folder, model


damage = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                        min_size=1, max_size=4)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
)


def _damaged(data, how):
    kind, detail = how
    if kind == "truncate":
        return data[:int(len(data) * detail)]
    if kind == "append":
        return data + detail
    changed = bytearray(data)
    for where, mask in detail:
        changed[int(len(changed) * where)] ^= mask
    return bytes(changed)


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@_settings("loaders")
@given(name=st.sampled_from(["w.safetensors", "c.pt", "h.csv", "h.json"]), how=damage)
def test_a_damaged_file_is_refused_with_its_path_or_loads_exactly(saved, fresh, name, how):
    folder, model = saved
    path = fresh() / name
    path.write_bytes(_damaged((folder / name).read_bytes(), how))
    if name.startswith("h."):
        _outcome(lambda: History.load(path), path=path)
        return
    target = _model("mse")
    optimizer = target.optimizer
    loaded = {}
    error = _outcome(lambda: loaded.update(metadata=load_weights(target.module, path) if name.endswith(".safetensors")
                                           else load_checkpoint(path, target.module, optimizer)), path=path)
    if error is None:
        assert _same_state(target.module.state_dict(), model.module.state_dict()), "a damaged file loaded other values"
        if name == "c.pt":
            assert loaded["metadata"] == {"epoch": 1, "logs": {"loss": 0.5}}


@_settings("predictions")
@given(shard=st.integers(-1, 2), how=damage)
def test_damaged_predictions_are_refused_with_the_path_or_read_exactly(saved, fresh, shard, how):
    folder, _ = saved
    copy = fresh() / "preds"
    shutil.copytree(folder / "preds", copy)
    index = json.loads((copy / "index.json").read_text())
    path = copy / ("index.json" if shard < 0 else index["shards"][shard]["file"])  # -1: the index itself
    path.write_bytes(_damaged(path.read_bytes(), how))
    loaded = []
    if _outcome(lambda: loaded.append(Predictions(copy).load()), path=path) is None:
        assert torch.equal(loaded[0], Predictions(folder / "preds").load()), "damaged predictions read other values"


@_settings("backups")
@given(which=st.sampled_from(["pt", "json"]), how=damage)
def test_a_damaged_backup_falls_back_or_is_refused_by_folder(saved, fresh, which, how):
    folder, _ = saved
    backup = fresh()
    for name in os.listdir(folder / "backup"):
        if not name.startswith("."):
            (backup / name).write_bytes((folder / "backup" / name).read_bytes())
    newest = backup / f"{max(n for n in os.listdir(backup) if n.endswith('.pt'))[:-3]}.{which}"
    newest.write_bytes(_damaged(newest.read_bytes(), how))
    model = _model("mse")
    torch.manual_seed(0)
    _outcome(lambda: model.fit(torch.randn(16, 3), torch.randn(16, 1), epochs=2, verbose=0,
                               callbacks=[BackupAndRestore(backup, delete_checkpoint=False)]), path=backup)


plain = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3),
                               st.just(object()), st.just({1, 2})),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner,
                                                                                           max_size=3)), max_leaves=6)


@_settings("save")
@given(metadata=st.dictionaries(st.text(max_size=4), plain, max_size=3))
def test_saving_metadata_round_trips_or_writes_nothing(fresh, metadata):
    folder = fresh()
    net = torch.nn.Linear(3, 1)
    error = _outcome(lambda: save_checkpoint(folder / "c.pt", net, None, metadata))
    if error is None:
        assert json.dumps(load_checkpoint(folder / "c.pt", net), default=repr) == json.dumps(metadata, default=repr)
    else:
        assert os.listdir(folder) == [], "a refused save leaves no file, not even a temporary one"


# -- CSVs for the command line -------------------------------------------------------------------------

cells = st.one_of(st.floats(-10, 10, width=32), st.sampled_from([math.inf, math.nan, 1.0, 0.0]),
                  st.sampled_from(["a", "b", ""]), st.integers(0, 3))


@_settings("cli")
@given(columns=st.dictionaries(st.sampled_from(["p", "q", "label"]), st.lists(cells, min_size=1, max_size=12),
                               min_size=1, max_size=3),
       task=st.sampled_from(["auto", "classification", "regression"]), lr=st.sampled_from([None, "0.01", "-1"]))
def test_the_cli_on_generated_csvs_trains_or_says_what_to_fix(fresh, columns, task, lr):
    folder = fresh()
    rows = min(len(v) for v in columns.values())
    pd.DataFrame({k: v[:rows] for k, v in columns.items()}).to_csv(folder / "data.csv", index=False)
    args = ["train", "--data", folder / "data.csv", "--target", "label", "--task", task, "--epochs", "1",
            "--verbose", "0", "--out", folder / "runs", "--patience", "1"] + (["--lr", lr] if lr else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code:
        assert result.exit_code == 1 and result.output.count("Error: ") == 1 and "Traceback" not in result.output
    assert not list(Path(folder).rglob("*.tmp")), "no temporary file is left behind"
