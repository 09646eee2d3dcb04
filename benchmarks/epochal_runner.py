"""epochal trained as a user writes it: `Model`, `compile`, `fit`, timed by an epoch-only callback."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from clock import EpochSpan, now
from workloads import Data, Unsupported

import epochal


class EpochTimer(epochal.callbacks.Callback):
    """Records each epoch's (begin, end) wall and CPU time (`clock`); it overrides no batch hook, so it costs
    nothing per batch."""

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.spans: list[EpochSpan] = []

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._begin = now()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.spans.append((self._begin, now()))


def train(
    module: nn.Module, data: Data, *, batch_size: int, epochs: int, jit_compile: bool, optimizer: str = "adam",
    cuda_graphs: bool = False, device: str = "cpu", precision: str = "32",
) -> tuple[list[EpochSpan], dict[str, float]]:
    """Train `module` on `device` through `epochal.Model.fit`, with validation after each epoch, at
    `precision` ("32" or "bf16-mixed": `compile(precision=...)`); a streamed workload passes its
    DataLoaders to `fit` as they are.

    Returns the wall-clock (begin, end) of every epoch and the last epoch's logs.
    Raises `Unsupported` when `compile` does not accept the options the variant needs.
    """
    model = epochal.Model(module, device=device)
    loss = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
    # Compiled: the whole step in one graph, 8 steps per call (Keras's steps_per_execution).
    options: dict[str, Any] = {"jit_compile": True, "steps_per_execution": 8} if jit_compile else {}
    if precision != "32":
        options["precision"] = precision
    if cuda_graphs:
        options["cuda_graphs"] = True
    try:
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], **options)
    except TypeError as error:
        if not any(name in str(error) for name in options):
            raise
        raise Unsupported(str(error)) from error
    timer = EpochTimer()
    if data.loaders is not None:
        history = model.fit(data.loaders.train, epochs=epochs, validation_data=data.loaders.validation, verbose=0,
                            callbacks=[timer])
    else:
        history = model.fit(data.x, data.y, epochs=epochs, batch_size=batch_size,
                            validation_data=(data.x_val, data.y_val), verbose=0, callbacks=[timer])
    return timer.spans, {key: values[-1] for key, values in history.history.items()}


def w2_samples_per_s(callbacks: list[epochal.callbacks.Callback], samples: int, epochs: int, seed: int) -> float:
    """Steady-state training samples per wall-clock second (epoch 1 excluded) of W2's eager `fit` with `callbacks`
    (no validation): what a callback costs per batch, when compared with none."""
    from workloads import WORKLOADS, build_module, make_data

    workload = WORKLOADS["W2"]
    data = make_data(workload, samples, seed)
    model = epochal.Model(build_module(workload, seed), device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(data.x, data.y, epochs=epochs, batch_size=workload.batch_size, verbose=0, callbacks=[timer, *callbacks])
    steady = timer.spans[-1][1].wall - timer.spans[1][0].wall
    return len(data.x) * (epochs - 1) / steady


def callback_variants(variants: Mapping[str, Callable[[], list[epochal.callbacks.Callback]]],
                      description: str) -> tuple[argparse.Namespace, dict[str, list[float]]]:
    """Parse `--repeats --samples --epochs --seed`, time W2 once per variant per repeat (alternated, so that
    machine noise hits them alike; variant `none` first) and print the table: median and best samples/s and
    their ratio to `none`. Returns the arguments and each variant's runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20_000, help="training samples")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in variants}
    load = open("/proc/loadavg").read().split()[0]
    for _ in range(args.repeats):
        for name, make in variants.items():
            results[name].append(w2_samples_per_s(make(), args.samples, args.epochs, args.seed))
    print(f"W2 eager, {args.samples} samples, {args.repeats} repeats, torch threads {torch.get_num_threads()}, "
          f"load average {load} before / {open('/proc/loadavg').read().split()[0]} after, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| variant | median samples/s | vs none | best samples/s | vs none | each run |\n|---|---|---|---|---|---|")
    for name, values in results.items():
        median, best = statistics.median(values), max(values)
        print(f"| {name} | {median:,.0f} | {median / statistics.median(results['none']):.3f} | {best:,.0f} | "
              f"{best / max(results['none']):.3f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    return args, results
