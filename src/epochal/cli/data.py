"""Loading a data set for the command line: bundled or from a file, encoded, split and scaled for the user."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from epochal.cli.errors import CliError, need

#: scikit-learn's bundled data sets that `--data` names, and the task each one is.
BUNDLED = {"digits": "classification", "iris": "classification", "wine": "classification",
           "breast_cancer": "classification", "diabetes": "regression"}
#: A target of whole numbers with at most this many distinct values is read as class labels.
MAX_CLASSES = 20
FILE_TYPES = (".csv", ".parquet", ".npz")


@dataclass
class Data:
    """Arrays ready for `fit`: float32 features, int64 labels or float32 `(N, 1)` targets."""

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    features: list[str]
    classes: list[str] | None

    @property
    def outputs(self) -> int:
        """Units the model's last layer needs: one per class, or one for regression."""
        return len(self.classes) if self.classes is not None else 1


def load_data(source: str, *, target: str | None = None, task: str = "auto", test_split: float = 0.2,
              validation_split: float = 0.2, seed: int = 0) -> Data:
    """Read `source`, encode labels and categorical features, hold out a test split and scale.

    Features are standardised with statistics of the rows that `fit` will train on (not the
    validation tail nor the test split), so nothing leaks from them.

    Args:
        source: A bundled data set name (`digits`, `iris`, `wine`, `breast_cancer`, `diabetes`) or a
            `.csv`, `.parquet` or `.npz` file.
        target: The column (or npz array) to predict. Defaults to `None`: required for files
            except an npz holding `x` and `y`.
        task: `classification`, `regression` or `auto` (from the target). Defaults to `"auto"`.
        test_split: Fraction held out for the final test. Defaults to `0.2`.
        validation_split: The fraction `fit` will take from the end of the training rows. Defaults to `0.2`.
        seed: Seed of the shuffle before splitting. Defaults to `0`.
    """
    if not 0 < test_split < 1:
        raise CliError(f"--test-split must be between 0 and 1. Received: {test_split}")
    x, y, features = _read(source, target)
    _check_finite(x, y, features, source)
    task = _task(y, task)
    classes = None
    if task == "classification":
        names, y = np.unique(np.asarray(y).astype(str) if y.dtype.kind in "OUSb" else y, return_inverse=True)
        classes = [str(name) for name in names]
        if len(classes) < 2:
            raise CliError(f"The target of {source} has a single class ({classes[0]!r}): there is nothing to "
                           "classify. Choose another --target, or --task regression.")
        y = y.astype(np.int64)
    else:
        y = np.asarray(y, dtype=np.float32).reshape(-1, 1)
    model_selection = need("sklearn.model_selection")
    stratify = y if classes is not None and np.bincount(y).min() >= 2 else None
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        x, y, test_size=test_split, random_state=seed, shuffle=True, stratify=stratify)
    fitted = x_train[: max(int(len(x_train) * (1 - validation_split)), 1)]
    mean, scale = fitted.mean(axis=0), fitted.std(axis=0)
    scale[scale == 0] = 1.0
    x_train, x_test = ((part - mean) / scale for part in (x_train, x_test))
    return Data(Path(source).stem if source not in BUNDLED else source, task, x_train.astype(np.float32),
                y_train, x_test.astype(np.float32), y_test, features, classes)


def _read(source: str, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if source in BUNDLED:
        bunch = getattr(need("sklearn.datasets"), f"load_{source}")()
        return np.asarray(bunch.data, dtype=np.float64), bunch.target, list(bunch.feature_names)
    path = Path(source)
    if path.suffix.lower() not in FILE_TYPES:
        raise CliError(f"--data must be one of {', '.join(BUNDLED)} or a {', '.join(FILE_TYPES)} file. "
                       f"Received: {source!r}")
    if not path.is_file():
        raise CliError(f"No such file: {source}")
    if path.suffix.lower() == ".npz":
        return _read_npz(path, target)
    pandas = need("pandas")
    frame = pandas.read_csv(path) if path.suffix.lower() == ".csv" else pandas.read_parquet(path)
    return _split_frame(frame, target, source)


def _read_npz(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as arrays:
        names = list(arrays.keys())
        y_name = target or "y"
        x_names = [name for name in names if name != y_name]
        if y_name not in names or len(x_names) != 1:
            raise CliError(f"{path} must hold one feature array and the target array {y_name!r} "
                           f"(choose it with --target). Arrays: {', '.join(names)}")
        x = np.asarray(arrays[x_names[0]], dtype=np.float64).reshape(len(arrays[y_name]), -1)
        return x, np.asarray(arrays[y_name]), [f"{x_names[0]}[{i}]" for i in range(x.shape[1])]


def _split_frame(frame: Any, target: str | None, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    columns = ", ".join(map(str, frame.columns))
    if target is None:
        raise CliError(f"--target is required with a data file: name the column to predict. Columns: {columns}")
    if target not in frame.columns:
        raise CliError(f"Unknown column {target!r} for --target in {source}. Columns: {columns}")
    missing = [str(c) for c in frame.columns if frame[c].isna().any()]
    if missing:
        raise CliError(f"Column(s) {', '.join(missing)} of {source} have missing values: fill or drop them first.")
    features = need("pandas").get_dummies(frame.drop(columns=[target]), dtype=float)  # one-hot text columns
    if features.shape[1] == 0:
        raise CliError(f"{source} has no feature columns besides the target {target!r}.")
    return features.to_numpy(dtype=np.float64), frame[target].to_numpy(), [str(c) for c in features.columns]


def _check_finite(x: np.ndarray, y: np.ndarray, features: list[str], source: str) -> None:
    """Infinite (or NaN) features or numeric targets are refused, naming the columns that hold them."""
    bad = [name for name, finite in zip(features, np.isfinite(x).all(axis=0)) if not finite]
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        bad.append("the target")
    if bad:
        raise CliError(f"{', '.join(bad)} of {source} hold infinite or missing values: fix or drop those rows first.")


def _task(y: np.ndarray, task: str) -> str:
    if task not in ("auto", "classification", "regression"):
        raise CliError(f"--task must be auto, classification or regression. Received: {task!r}")
    if task != "auto":
        return task
    if y.dtype.kind in "OUSb":
        return "classification"
    whole = y.dtype.kind in "iu" or bool(np.all(np.mod(y, 1) == 0))
    return "classification" if whole and len(np.unique(y)) <= MAX_CLASSES else "regression"
