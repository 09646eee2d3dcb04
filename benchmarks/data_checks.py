"""The cost of checking data whole before training (issue 19), against one W1 training epoch.

    PYTHONPATH=src python benchmarks/data_checks.py [--samples 60000] [--repeats 5]

Measures, on W1's data (54k training + 6k validation samples of 784 float32 features, integer labels):
the checks `fit` makes before training (`epochal.data.checks.check_data`: NaN/inf in x and y, weights;
`epochal.training.target_checks`: every label against the loss), the run fingerprint's data hash (paid
only by runs with BackupAndRestore or ModelCheckpoint, at their first save), and one steady-state W1
training epoch of `fit` (the median of epochs 2..4). Prints one markdown table row per measure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import epochal  # noqa: E402
from epochal.data import make_fit_data  # noqa: E402
from epochal.data.checks import check_data  # noqa: E402
from epochal.training.fingerprint import data_fingerprint  # noqa: E402
from epochal.training.target_checks import target_check  # noqa: E402
from workloads import WORKLOADS, build_module, make_data  # noqa: E402


def _median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workload = WORKLOADS["W1"]
    data = make_data(workload, args.samples, seed=0)
    model = epochal.Model(build_module(workload, seed=0), device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train, validation, _ = make_fit_data(
        data.x, data.y, sample_weight=None, class_weight=None, batch_size=workload.batch_size, shuffle=True,
        validation_split=0.0, validation_data=(data.x_val, data.y_val), validation_batch_size=workload.batch_size,
        steps_per_epoch=None, validation_steps=None, device=torch.device("cpu"), float_dtype=torch.float32)
    adapters = [(train, ""), (validation, "validation_data: ")]
    checks = _median_seconds(lambda: check_data(adapters, check_finite=True), args.repeats)
    outputs = model.module(data.x[:2])
    model._task.build(outputs, data.y[:2])  # noqa: SLF001  # what fit's first batch does
    check = target_check(model._task, outputs, data.y[:2])  # noqa: SLF001
    labels = _median_seconds(lambda: (check(train.y, ""), check(validation.y, "")), args.repeats)  # type: ignore[misc]
    hashing = _median_seconds(lambda: (data_fingerprint(train), data_fingerprint(validation)), args.repeats)

    epoch_times: list[float] = []
    clock = epochal.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_times.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: epoch_times.__setitem__(-1, epoch_times[-1] + time.perf_counter()))
    model.fit(data.x, data.y, batch_size=workload.batch_size, epochs=4, verbose=0, callbacks=[clock])
    epoch = statistics.median(epoch_times[1:])

    print(f"threads {torch.get_num_threads()}, load average before/after: see `uptime`")
    print("| measure | seconds | share of one W1 epoch |")
    print("|---|---|---|")
    for name, seconds in [("data checks before fit (NaN/inf in x and y, weights)", checks),
                          ("label check against the loss (all of y)", labels),
                          ("both: what `fit` adds before training", checks + labels),
                          ("data fingerprint hash (only with backups/checkpoints)", hashing),
                          ("one steady W1 training epoch (median of epochs 2-4)", epoch)]:
        print(f"| {name} | {seconds:.4f} | {100 * seconds / epoch:.2f} % |")


if __name__ == "__main__":
    main()
