"""What `TerminateOnNaN` costs per batch on W2: epochal's eager `fit` without it, with it, and reading every batch.

    PYTHONPATH=src:benchmarks OMP_NUM_THREADS=1 nice -n 10 taskset -c 1 python benchmarks/terminate_on_nan.py --repeats 9

Variants, alternated within each repeat so that machine noise hits them alike (medians reported):
`none` (no batch callback), `default` (`TerminateOnNaN()`: losses read together every 32 batches
and at each epoch's end) and `every_batch` (`TerminateOnNaN(check_every=1)`: one read per batch,
Keras's placement of the stop and the cost the callback had before). Steady-state training samples/s
(epoch 1 excluded), as `measure.py` counts them: median and best run. Then the hook alone: microseconds per batch of
`on_train_batch_end` on the loop's lazy logs, which the noise of whole runs hides on a CPU.
"""

from __future__ import annotations

import statistics
import time

import torch
from epochal_runner import callback_variants

import epochal
from epochal.logs import Logs

VARIANTS = {"none": None, "default": {}, "every_batch": {"check_every": 1}}


def hook_microseconds(options: dict[str, int], batches: int = 200_000) -> float:
    """Per-batch cost of the callback's batch hook on logs holding W2's loss and accuracy as a tensor."""
    guard = epochal.callbacks.TerminateOnNaN(**options)
    guard.set_model(epochal.Model(torch.nn.Linear(1, 1), device="cpu"))
    guard.on_train_begin()
    guard.on_epoch_begin(0)
    values = torch.tensor([0.5, 0.9])
    started = time.perf_counter()
    for batch in range(batches):
        guard.on_train_batch_end(batch, Logs(("loss", "accuracy"), values))
    return (time.perf_counter() - started) / batches * 1e6


def main() -> None:
    args, _ = callback_variants({name: (lambda options=options: [] if options is None else [
        epochal.callbacks.TerminateOnNaN(**options)]) for name, options in VARIANTS.items()}, __doc__.splitlines()[0])
    for name, options in VARIANTS.items():
        if options is not None:
            costs = [hook_microseconds(options) for _ in range(args.repeats)]
            print(f"hook alone, {name}: {statistics.median(costs):.2f} µs per batch (median of {args.repeats})")


if __name__ == "__main__":
    main()
