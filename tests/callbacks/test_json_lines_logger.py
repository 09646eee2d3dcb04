"""JSONLinesLogger writes strict JSON lines per epoch, and per batch when asked."""

import json

from epochal.callbacks import JSONLinesLogger
from epochal.callbacks.callback_list import CallbackList


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_epoch_lines_and_nan_as_null(tmp_path):
    logger = JSONLinesLogger(tmp_path / "log.jsonl")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5})
    assert _records(tmp_path / "log.jsonl") == [{"epoch": 0, "loss": 0.5}]  # durable before train end
    logger.on_epoch_end(1, {"loss": float("inf"), "val_loss": 0.25})
    logger.on_train_end()
    assert _records(tmp_path / "log.jsonl")[1] == {"epoch": 1, "loss": None, "val_loss": 0.25}


def test_per_batch_lines_carry_epoch_and_batch(tmp_path):
    logger = JSONLinesLogger(tmp_path / "log.jsonl", per_batch=True)
    logger.on_train_begin()
    logger.on_epoch_begin(3)
    logger.on_train_batch_end(0, {"loss": 1.0})
    logger.on_train_batch_end(1, {"loss": 0.5})
    logger.on_epoch_end(3, {"loss": 0.75})
    logger.on_train_end()
    assert _records(tmp_path / "log.jsonl") == [
        {"epoch": 3, "batch": 0, "loss": 1.0}, {"epoch": 3, "batch": 1, "loss": 0.5}, {"epoch": 3, "loss": 0.75}]


def test_batches_are_ignored_unless_asked(tmp_path):
    assert not CallbackList([JSONLinesLogger(tmp_path / "a.jsonl")]).wants("on_train_batch_end")


def test_append_and_overwrite(tmp_path):
    path = tmp_path / "log.jsonl"
    for append in (False, True):
        logger = JSONLinesLogger(path, append=append)
        logger.on_train_begin()
        logger.on_epoch_end(0, {"loss": 0.5})
        logger.on_train_end()
    assert len(_records(path)) == 2
    logger = JSONLinesLogger(path)
    logger.on_train_begin()
    logger.on_train_end()
    assert len(_records(path)) == 2, "a run that writes no line leaves the file as it was"
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.25})
    logger.on_train_end()
    assert _records(path) == [{"epoch": 0, "loss": 0.25}], "the first line of a run overwrites the file"
