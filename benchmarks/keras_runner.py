"""Keras 3 as its docs teach it, on the torch or the JAX backend: the same architecture written in Keras
layers (Keras's own initialisers), `compile` with Keras's optimizer of the same hyperparameters, `fit`
on NumPy arrays (W5: on its DataLoaders, which Keras 3 reads directly), every other setting Keras's
default (on JAX `fit` runs `jax.jit`-compiled steps by default; on torch, eager ones). `bf16-mixed` is
Keras's "mixed_bfloat16" dtype policy, set before the layers are built, as its mixed-precision guide does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from transformer import CONTEXT, VOCAB
from clock import EpochSpan, now
from workloads import Data, Unsupported, Workload

#: The workloads each backend runs (the issue: JAX as the CPU reference on W1–W3).
SUPPORTED = {"torch": ("W1", "W2", "W3", "W4", "W5"), "jax": ("W1", "W2", "W3")}


def _import_keras(backend: str) -> Any:
    os.environ["KERAS_BACKEND"] = backend  # read once, when keras is first imported
    try:
        import keras
    except ImportError as error:
        raise Unsupported(f"unavailable: {error}") from error
    if keras.backend.backend() != backend:
        raise Unsupported(f"keras was already imported with the {keras.backend.backend()} backend")
    return keras


def _mlp(keras: Any, *widths: int) -> Any:
    hidden = [keras.layers.Dense(width, activation="relu") for width in widths[1:-1]]
    return keras.Sequential([keras.Input((widths[0],)), *hidden, keras.layers.Dense(widths[-1])])


def _cnn(keras: Any) -> Any:
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10),
    ])


def _gpt(keras: Any, blocks: int = 4, width: int = 256, heads: int = 4) -> Any:
    layers = keras.layers

    class Positions(layers.Layer):  # keras_hub's PositionEmbedding, without the extra package
        def build(self, input_shape: Any) -> None:
            self.table = self.add_weight(shape=(CONTEXT, width), initializer="random_normal")

        def call(self, x: Any) -> Any:
            return x + self.table

    tokens = keras.Input((CONTEXT,), dtype="int32")
    x = Positions()(layers.Embedding(VOCAB, width)(tokens))
    for _ in range(blocks):
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        x = x + layers.MultiHeadAttention(heads, width // heads)(h, h, use_causal_mask=True)
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        x = x + layers.Dense(width)(layers.Dense(4 * width, activation="gelu")(h))
    logits = layers.Dense(VOCAB, use_bias=False)(layers.LayerNormalization(epsilon=1e-5)(x))
    return keras.Model(tokens, logits)


def _model(keras: Any, name: str) -> Any:
    builders = {"W1": lambda: _mlp(keras, 784, 256, 256, 10), "W2": lambda: _mlp(keras, 784, 32, 10),
                "W3": lambda: _cnn(keras), "W4": lambda: _gpt(keras), "W5": lambda: _mlp(keras, 784, 256, 256, 10)}
    return builders[name]()


def train(workload: Workload, data: Data, *, backend: str, epochs: int, seed: int,
          precision: str = "32") -> tuple[list[EpochSpan], dict[str, float]]:
    """Train the Keras twin of `workload`'s model on `data` with `keras.Model.fit` on `backend`, at `precision`
    ("32" or "bf16-mixed")."""
    if workload.name not in SUPPORTED[backend]:
        raise Unsupported(f"keras-{backend} runs {', '.join(SUPPORTED[backend])} only")
    keras = _import_keras(backend)
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bf16-mixed" else "float32")

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.spans: list[EpochSpan] = []

        def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            self._begin = now()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            self.spans.append((self._begin, now()))

    model = _model(keras, workload.name)
    optimizer = (keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.004) if workload.optimizer == "adamw"
                 else keras.optimizers.Adam(learning_rate=1e-3))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    timer = EpochTimer()
    if data.loaders is not None:
        history = model.fit(data.loaders.train, validation_data=data.loaders.validation, epochs=epochs, verbose=0,
                            callbacks=[timer])
    else:
        def arrays(x: Any) -> Any:  # Keras's convolutions read channels last
            return (x.permute(0, 2, 3, 1) if x.ndim == 4 else x).numpy()

        history = model.fit(arrays(data.x), data.y.numpy(), batch_size=workload.batch_size, epochs=epochs,
                            validation_data=(arrays(data.x_val), data.y_val.numpy()), verbose=0, callbacks=[timer])
    return timer.spans, {key: float(values[-1]) for key, values in history.history.items()}
