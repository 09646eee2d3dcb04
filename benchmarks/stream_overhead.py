"""What epochal adds per streamed batch (W5, issue 21): the work `fit(dataloader)` does on each batch a
DataLoader yields before the train step, beside one W1 train step.

    PYTHONPATH=src python benchmarks/stream_overhead.py [--batches 400] [--repeats 7]

A W5 batch (128 × 784 float32, 128 int64 labels, as the DataLoader's workers hand it over) passes
through `DatasetAdapter`: conversion to tensors, the finite-values check (one `torch.aminmax`), the
label check against the loss (armed after the first batch), placement on the device. Each row is the
median over `--repeats` passes of `--batches` batches, in microseconds per batch; the last row is one
eager W1 train step of `fit` on the same batches, for scale. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import epochal  # noqa: E402
from epochal.data import DatasetAdapter  # noqa: E402
from epochal.training.target_checks import target_check  # noqa: E402
from data_checks import _median_seconds  # noqa: E402
from workloads import WORKLOADS, build_module  # noqa: E402


def _microseconds(action: Callable[[], None], batches: int, repeats: int) -> float:
    """Median microseconds per batch of `action`, a pass over `batches` batches."""
    return _median_seconds(action, repeats) / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    workload = WORKLOADS["W5"]
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(workload.batch_size, 784, generator=generator),
                torch.randint(0, 10, (workload.batch_size,), generator=generator)) for _ in range(args.batches)]
    model = epochal.Model(build_module(workload, 0), device="cpu")
    loss = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    adapter = DatasetAdapter(batches, steps=None, device=torch.device("cpu"), float_dtype=torch.float32)

    def drain() -> None:
        for _ in adapter.epoch_batches(0):
            pass

    rows = {}
    adapter.check_finite = False
    rows["conversion and placement only (`check_finite=False`, no label check)"] = _microseconds(drain, args.batches, args.repeats)
    adapter.check_finite = True
    rows["+ finite-values check (the default)"] = _microseconds(drain, args.batches, args.repeats)
    task = model._task
    assert task is not None
    model.train_on_batch(*batches[0])  # builds the task's losses, as the first batch of a fit does
    adapter.check_targets = target_check(task, model.module(batches[0][0]), batches[0][1])
    rows["+ label check against the loss (the default in `fit`)"] = _microseconds(drain, args.batches, args.repeats)
    rows["one eager W1 train step of `fit` on these batches, for scale"] = _microseconds(
        lambda: model.fit(batches, epochs=1, verbose=0), args.batches, args.repeats)
    print(f"| per W5 batch ({args.batches} batches, median of {args.repeats}) | µs |\n|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:,.1f} |")


if __name__ == "__main__":
    main()
