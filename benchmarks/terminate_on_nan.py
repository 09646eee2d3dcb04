"""What `TerminateOnNaN` costs per batch on W2: epochal's eager `fit` without it, with it, and reading every batch.

    PYTHONPATH=src:benchmarks OMP_NUM_THREADS=1 nice -n 10 taskset -c 1 python benchmarks/terminate_on_nan.py --repeats 9

Variants, alternated within each repeat so that machine noise hits them alike (medians reported):
`none` (no batch callback), `default` (`TerminateOnNaN()`: losses read together every 32 batches
and at each epoch's end) and `every_batch` (`TerminateOnNaN(check_every=1)`: one read per batch,
Keras's placement of the stop and the cost the callback had before). Steady-state training samples/s
(epoch 1 excluded), as `measure.py` counts them. Then the hook alone: microseconds per batch of
`on_train_batch_end` on the loop's lazy logs, which the noise of whole runs hides on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from epochal_runner import w2_samples_per_s

import epochal
from epochal.logs import Logs

VARIANTS = {"none": None, "default": {}, "every_batch": {"check_every": 1}}


def samples_per_s(variant: str, samples: int, epochs: int, seed: int) -> float:
    options = VARIANTS[variant]
    return w2_samples_per_s([] if options is None else [epochal.callbacks.TerminateOnNaN(**options)], samples,
                            epochs, seed)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20_000, help="training + validation samples")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    load = open("/proc/loadavg").read().split()[0]
    for _ in range(args.repeats):
        for name in VARIANTS:
            results[name].append(samples_per_s(name, args.samples, args.epochs, args.seed))
    print(f"W2 eager, {args.samples} samples, {args.repeats} repeats, torch threads {torch.get_num_threads()}, "
          f"load average {load} before / {open('/proc/loadavg').read().split()[0]} after, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    baseline = statistics.median(results["none"])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {median / baseline:.3f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    for name, options in VARIANTS.items():
        if options is not None:
            costs = [hook_microseconds(options) for _ in range(args.repeats)]
            print(f"hook alone, {name}: {statistics.median(costs):.2f} µs per batch (median of {args.repeats})")


if __name__ == "__main__":
    main()
