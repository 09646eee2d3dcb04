"""What `Rollback` costs on W2 when nothing fails: epochal's eager `fit` without it and with it.

    PYTHONPATH=src:benchmarks OMP_NUM_THREADS=1 nice -n 10 taskset -c 1 python benchmarks/rollback.py --repeats 9

Variants, alternated within each repeat so that machine noise hits them alike: `none` (no callback),
`rollback` (`Rollback()`: losses read every 100 batches, the state copied in memory at each check that
passes), `rollback_every_32` (`Rollback(check_every=32)`). Steady-state training samples/s (epoch 1
excluded), as `measure.py` counts them: the median and the best run (the least disturbed one, on a busy
machine the steadier figure). Then the parts alone, timed in a loop: what the callback and the loop add to
a batch (the checks that pass, reading the losses and copying the state, included), over W2's batch time —
the least disturbed part over the best run's batch, and the median over the median (like over like: on a
busy machine a disturbed median over the best run's batch overstates the share).
"""

from __future__ import annotations

import statistics
import time

import torch
from epochal_runner import callback_variants
from workloads import WORKLOADS, build_module

import epochal
from epochal.logs import Logs
from epochal.training.rollback_points import RollbackPoints
from epochal.training.state import TrainingState

VARIANTS = {"none": None, "rollback": {}, "rollback_every_32": {"check_every": 32}}


def parts_microseconds(check_every: int, batches: int = 20_000) -> tuple[float, float]:
    """(µs a batch, its share of the checks included; µs of one passing check) of a Rollback on W2's state, as
    the loop drives it."""
    model = epochal.Model(build_module(WORKLOADS["W2"], 0), device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(torch.randn(32, 784), torch.randint(0, 10, (32,)))  # Adam's state exists
    guard = epochal.callbacks.Rollback(check_every=check_every, verbose=0)
    history = epochal.History()
    guard.set_model(model)
    state = TrainingState(model, callbacks=[guard, history])
    points = RollbackPoints(guard, state, history)
    guard.on_train_begin()
    values = torch.tensor([0.5, 0.9])
    started = time.perf_counter()
    for batch in range(batches):
        guard.on_train_batch_end(batch, Logs(("loss", "accuracy"), values))
        state.batch += 1
        points.skips(0, batch, 1)
        points.after_batch(force=False)
    every_batch = (time.perf_counter() - started) / batches * 1e6
    started = time.perf_counter()
    for batch in range(200):
        guard.on_train_batch_end(batch, Logs(("loss", "accuracy"), values))
        points.after_batch(force=True)
    return every_batch, (time.perf_counter() - started) / 200 * 1e6


def main() -> None:
    args, results = callback_variants({name: (lambda options=options: [] if options is None else [
        epochal.callbacks.Rollback(**options)]) for name, options in VARIANTS.items()}, __doc__.splitlines()[0])
    batch_us, median_batch_us = (32 / figure(results["none"]) * 1e6 for figure in (max, statistics.median))
    for check_every in (100, 32):
        parts = [parts_microseconds(check_every) for _ in range(args.repeats)]
        every, check = statistics.median(p[0] for p in parts), statistics.median(p[1] for p in parts)
        least = min(p[0] for p in parts)  # the least disturbed, as the best run's batch time it is set against
        print(f"check_every={check_every}: {every:.1f} µs a batch (median; least {least:.1f} µs), its checks "
              f"included (one check: {check:.0f} µs); least over best: {least / batch_us:.1%} of W2's best batch "
              f"time here ({batch_us:.0f} µs), median over median: {every / median_batch_us:.1%}")


if __name__ == "__main__":
    main()
