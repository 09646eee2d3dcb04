"""CSVLogger writes one durable row per epoch and keeps columns aligned when keys come and go."""

import csv

import pytest

from epochal.callbacks import CSVLogger


def _rows(path, separator=","):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter=separator))


def test_one_row_per_epoch_with_sorted_columns(tmp_path):
    logger = CSVLogger(tmp_path / "log.csv")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75})
    assert _rows(tmp_path / "log.csv") == [["epoch", "accuracy", "loss"], ["0", "0.75", "0.5"]]  # written already
    logger.on_epoch_end(1, {"loss": 0.25, "accuracy": 0.875})
    logger.on_train_end()
    assert _rows(tmp_path / "log.csv")[2] == ["1", "0.875", "0.25"]


def test_late_keys_get_a_column_and_earlier_rows_get_na(tmp_path):
    logger = CSVLogger(tmp_path / "log.csv")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5})
    logger.on_epoch_end(1, {"loss": 0.4, "val_loss": 0.6})
    logger.on_epoch_end(2, {"loss": 0.3})
    assert _rows(tmp_path / "log.csv") == [
        ["epoch", "loss", "val_loss"], ["0", "0.5", "NA"], ["1", "0.4", "0.6"], ["2", "0.3", "NA"]]
    assert list(tmp_path.iterdir()) == [tmp_path / "log.csv"]  # the rewrite left no temporary behind


def test_pandas_reads_missing_values_as_nan(tmp_path):
    pandas = pytest.importorskip("pandas")
    logger = CSVLogger(tmp_path / "log.csv")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5})
    logger.on_epoch_end(1, {"loss": 0.4, "val_loss": 0.6})
    frame = pandas.read_csv(tmp_path / "log.csv")
    assert frame["val_loss"].isna().tolist() == [True, False]


def test_append_keeps_earlier_rows_and_columns(tmp_path):
    path = tmp_path / "log.csv"
    first = CSVLogger(path, separator=";")
    first.on_train_begin()
    first.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.6})
    second = CSVLogger(path, separator=";", append=True)
    second.on_train_begin()
    second.on_epoch_end(1, {"loss": 0.4})
    assert _rows(path, ";") == [["epoch", "loss", "val_loss"], ["0", "0.5", "0.6"], ["1", "0.4", "NA"]]


def test_without_append_a_new_run_starts_a_new_file(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    for _ in range(2):
        logger.on_train_begin()
        logger.on_epoch_end(0, {"loss": 0.5})
    assert _rows(path) == [["epoch", "loss"], ["0", "0.5"]]
