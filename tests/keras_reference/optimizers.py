"""Keras 3's numbers for `tests/test_keras_optimizers.py`, computed with Keras itself (torch backend).

Not part of the suite (Keras is no dependency of epochal). To regenerate the literals:

    pip install keras            # in a separate environment; 3.15.1 gave the numbers in the tests
    KERAS_BACKEND=torch python tests/keras_reference/optimizers.py

Each case of `keras_parity.OPTIMIZER_CASES` trains the same 3-2-1 tanh MLP on the same data with
`loss="mse"`, unshuffled batches and a learning rate that halves each epoch after the first; it prints
the History's losses and the final weights in torch's layout, as the `KERAS` literal of the test.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from keras_parity import (OPTIMIZER_BATCH, OPTIMIZER_CASES, OPTIMIZER_EPOCHS, optimizer_data,  # noqa: E402
                          optimizer_schedule)


def run(optimizer):
    x, y, (w1, b1, w2, b2) = optimizer_data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="tanh"), keras.layers.Dense(1)])
    model.set_weights([w1.T, b1, w2.T, b2])
    if optimizer == "lamb":  # Keras 3 has the class but `keras.optimizers.get` does not know the name
        optimizer = keras.optimizers.Lamb()
    elif not isinstance(optimizer, str):
        name, arguments = optimizer
        optimizer = getattr(keras.optimizers, name)(**arguments)
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, epochs=OPTIMIZER_EPOCHS, batch_size=OPTIMIZER_BATCH, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.LearningRateScheduler(optimizer_schedule)])
    k1, c1, k2, c2 = model.get_weights()
    weights = np.concatenate([k1.T.ravel(), c1, k2.T.ravel(), c2])
    return [round(float(v), 8) for v in history.history["loss"]], [round(float(v), 8) for v in weights]


if __name__ == "__main__":
    print(f"# keras {keras.__version__}, backend {keras.backend.backend()}")
    print("KERAS = {  # case: (History's loss per epoch, final weights in torch's layout)")
    for case, optimizer in OPTIMIZER_CASES:
        print(f"    {case!r}: {run(optimizer)},")
    print("}")
