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


# -- optimizers (`keras_reference/optimizers.py`, `tests/test_keras_optimizers.py`) --------------------

#: (case, optimizer): a Keras name, or (class name, Keras arguments) — the same names in both libraries.
OPTIMIZER_CASES = [
    ("sgd", "sgd"),
    ("sgd momentum", ("SGD", {"learning_rate": 0.1, "momentum": 0.9})),
    ("sgd nesterov decay", ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05})),
    ("adam", "adam"),
    ("adam amsgrad", ("Adam", {"learning_rate": 0.05, "epsilon": 0.01, "amsgrad": True, "weight_decay": 0.02})),
    ("adamw", "adamw"),
    ("rmsprop", "rmsprop"),
    ("rmsprop centered momentum", ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True,
                                               "epsilon": 0.01})),
    ("rmsprop decay", ("RMSprop", {"learning_rate": 0.01, "weight_decay": 0.1})),
    ("adagrad", "adagrad"),
    ("adagrad decay", ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.1})),
    ("adadelta", "adadelta"),
    ("adadelta fast", ("Adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-3})),
    ("adadelta decay", ("Adadelta", {"learning_rate": 1.0, "weight_decay": 0.1})),
    ("adamax", "adamax"),
    ("adamax fast", ("Adamax", {"learning_rate": 0.05, "epsilon": 0.01, "weight_decay": 0.02})),
    ("nadam", "nadam"),
    ("nadam fast", ("Nadam", {"learning_rate": 0.05, "epsilon": 0.01, "weight_decay": 0.02})),
    ("lion", "lion"),
    ("lion decay", ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "weight_decay": 0.5})),
    ("adafactor", "adafactor"),
    ("adafactor fast", ("Adafactor", {"learning_rate": 0.1, "clip_threshold": 0.5, "epsilon_2": 0.1})),
    ("adafactor decay", ("Adafactor", {"learning_rate": 0.1, "weight_decay": 0.1})),
    ("ftrl", "ftrl"),
    ("ftrl regularised", ("Ftrl", {"learning_rate": 0.1, "l1_regularization_strength": 0.01,
                                   "l2_regularization_strength": 0.02, "l2_shrinkage_regularization_strength": 0.03,
                                   "beta": 0.1, "learning_rate_power": -0.7})),
    ("ftrl decay", ("Ftrl", {"learning_rate": 0.1, "weight_decay": 0.1})),
    ("lamb", "lamb"),
    ("lamb decay", ("Lamb", {"learning_rate": 0.05, "weight_decay": 0.1})),
]
OPTIMIZER_EPOCHS, OPTIMIZER_BATCH = 3, 8


def optimizer_data():
    """Inputs (24, 3), targets (24, 1), and the weights of a 3-2-1 tanh MLP in torch's layout
    (`Linear(3, 2)` weight and bias, `Linear(2, 1)` weight and bias; Keras's kernels are their transposes)."""
    rng = np.random.default_rng(181)
    x = rng.normal(size=(24, 3)).astype("float32")
    y = (np.sin(x @ np.array([[1.0], [-2.0], [0.5]], "float32")) + 0.1).astype("float32")
    weights = [rng.normal(scale=0.7, size=shape).astype("float32") for shape in ((2, 3), (2,), (1, 2), (1,))]
    return x, y, weights


def optimizer_schedule(epoch, lr):
    """Keras's `LearningRateScheduler` form: the rate halves after the first epoch, then again."""
    return lr if epoch == 0 else lr * 0.5
