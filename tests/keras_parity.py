"""The arrays the Keras-parity tests and `keras_reference/issue18.py` share (seeded numpy, float32)."""

import numpy as np

SAMPLES, CLASSES = 40, 3


def classification_data():
    """Class probabilities (rows sum to 1), integer labels, their one-hot form and sample weights."""
    rng = np.random.default_rng(18)
    probabilities = rng.random((SAMPLES, CLASSES)).astype("float32") + 0.05
    probabilities /= probabilities.sum(1, keepdims=True)
    labels = rng.integers(0, CLASSES, SAMPLES)
    one_hot = np.eye(CLASSES, dtype="float32")[labels]
    weights = rng.random(SAMPLES).astype("float32") + 0.1
    return probabilities, labels, one_hot, weights


def binary_data():
    """Probabilities of the positive class, shape (SAMPLES, 1), and 0/1 targets of that shape."""
    rng = np.random.default_rng(180)
    return rng.random((SAMPLES, 1)).astype("float32"), rng.integers(0, 2, (SAMPLES, 1)).astype("float32")


def regression_data():
    """Inputs (30, 2), two-column targets, and predictions near them."""
    rng = np.random.default_rng(1800)
    x = rng.normal(size=(30, 2)).astype("float32")
    y = (x @ np.array([[1.0, -0.5], [0.5, 2.0]], "float32") + 0.1).astype("float32")
    predictions = (y + rng.normal(scale=0.5, size=y.shape)).astype("float32")
    return x, y, predictions
