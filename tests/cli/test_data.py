"""Data loading for the command line: task inference, label encoding, scaling on the fitted rows only."""

import numpy as np
import pandas as pd
import pytest

from epochal.cli.data import load_data


@pytest.mark.parametrize("target, task, classes", [
    (["cat", "dog"] * 20, "classification", ["cat", "dog"]),
    ([0, 1, 2, 3] * 10, "classification", ["0", "1", "2", "3"]),
    ([True, False] * 20, "classification", ["False", "True"]),
    (np.linspace(0, 1, 40), "regression", None),
    (list(range(40)), "regression", None),  # 40 distinct whole numbers: more than MAX_CLASSES
])
def test_task_is_inferred_from_the_target(tmp_path, target, task, classes):
    pd.DataFrame({"x": np.arange(40.0), "t": target}).to_csv(tmp_path / "d.csv", index=False)
    data = load_data(str(tmp_path / "d.csv"), target="t")
    assert (data.task, data.classes) == (task, classes)
    assert data.y_train.dtype == (np.int64 if classes else np.float32)


def test_features_are_scaled_on_the_rows_fit_trains_on():
    data = load_data("iris", validation_split=0.25, test_split=0.2)
    fitted = data.x_train[: int(len(data.x_train) * 0.75)]
    assert np.allclose(fitted.mean(axis=0), 0, atol=1e-5) and np.allclose(fitted.std(axis=0), 1, atol=1e-4)
    assert (len(data.x_train), len(data.x_test), data.outputs) == (120, 30, 3)


def test_text_features_are_one_hot_encoded(tmp_path):
    pd.DataFrame({"size": [1.0, 2.0] * 10, "colour": ["red", "blue"] * 10, "y": [0.5, 1.5] * 10}).to_csv(
        tmp_path / "d.csv", index=False)
    assert load_data(str(tmp_path / "d.csv"), target="y").features == ["size", "colour_blue", "colour_red"]
