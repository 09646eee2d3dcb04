"""`predict` eager against `jit_compile=True` (issue 21: compiled predict ≥ 1.5× eager on W2).

    PYTHONPATH=src python benchmarks/predict_speed.py [--workload W2] [--samples 60000] [--repeats 5]

Both variants predict the same samples with the same weights in one process, alternating; the
compiled one (`jit_compile=True, steps_per_execution=8`, as the benchmarks' `compiled` variant: 8
batches per call) is warmed up first (its compile time is printed apart). The sample count is not a
multiple of the batch size, so the short last batch is padded into the full batches' graph. Prints
samples/s, median (min–max), the ratio of medians, and the largest difference between the outputs.
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
from workloads import WORKLOADS, build_module, make_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="W2", choices=sorted(WORKLOADS))
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workload = WORKLOADS[args.workload]
    x = make_data(workload, args.samples + 1, seed=0).x  # 90 % of samples + 1: not a multiple of the batch
    module = build_module(workload, 0)
    models = {}
    for name, options in (("eager", {}), ("compiled", {"jit_compile": True, "steps_per_execution": 8})):
        model = epochal.Model(module, device="cpu")  # the same module: the same weights
        model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                      **options)
        started = time.perf_counter()
        model.predict(x, batch_size=workload.batch_size, verbose=0)
        print(f"{name}: first predict (compile included) {time.perf_counter() - started:.1f} s", file=sys.stderr)
        models[name] = model
    speeds: dict[str, list[float]] = {name: [] for name in models}
    outputs = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            outputs[name] = model.predict(x, batch_size=workload.batch_size, verbose=0)
            speeds[name].append(len(x) / (time.perf_counter() - started))
    print(f"| {args.workload} predict, {len(x):,} samples, batch {workload.batch_size} | samples/s, median (min–max) |")
    print("|---|---|")
    for name, values in speeds.items():
        print(f"| {name} | {statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f}) |")
    ratio = statistics.median(speeds["compiled"]) / statistics.median(speeds["eager"])
    difference = (outputs["compiled"] - outputs["eager"]).abs().max().item()
    print(f"\ncompiled / eager: {ratio:.2f}×; largest output difference {difference:.2e}; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
