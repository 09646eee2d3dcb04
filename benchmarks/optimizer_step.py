"""What one update of each named (Keras 3) optimizer costs, beside torch's optimizer of the same family.

    PYTHONPATH=src:benchmarks OMP_NUM_THREADS=1 nice -n 10 python benchmarks/optimizer_step.py --repeats 7

For W1's MLP (6 tensors, 269k parameters) and W4's transformer (many small tensors and a few large
ones): `optimizer.step()` alone on fixed gradients, in CPU microseconds per step (this process's CPU
time, readable on a busy machine), median over the repeats of `--steps` steps each. `epochal` is what
`compile(optimizer=name)` builds; `torch` is torch's optimizer with Keras's hyperparameters and torch's
default implementation on this device (a loop over tensors on the CPU), `foreach` the same with
`foreach=True`. Lion, Ftrl and Lamb have no torch counterpart. The variants alternate within a repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable

import torch
from workloads import WORKLOADS, build_module

from epochal.optimizers.factory import KNOWN_OPTIMIZERS, make_optimizer

Params = list[torch.nn.Parameter]

# torch's optimizer with Keras 3's defaults for the same name (epsilon 1e-7, RMSprop's rho 0.9, ...).
TORCH: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda p, **kw: torch.optim.SGD(p, lr=0.01, **kw),
    "adam": lambda p, **kw: torch.optim.Adam(p, lr=1e-3, eps=1e-7, **kw),
    "adamw": lambda p, **kw: torch.optim.AdamW(p, lr=1e-3, eps=1e-7, weight_decay=0.004, **kw),
    "rmsprop": lambda p, **kw: torch.optim.RMSprop(p, lr=1e-3, alpha=0.9, eps=1e-7, **kw),
    "adagrad": lambda p, **kw: torch.optim.Adagrad(p, lr=1e-3, initial_accumulator_value=0.1, eps=1e-7, **kw),
    "adadelta": lambda p, **kw: torch.optim.Adadelta(p, lr=1e-3, rho=0.95, eps=1e-7, **kw),
    "adamax": lambda p, **kw: torch.optim.Adamax(p, lr=1e-3, eps=1e-7, **kw),
    "nadam": lambda p, **kw: torch.optim.NAdam(p, lr=1e-3, eps=1e-7, **kw),
    "adafactor": lambda p, **kw: torch.optim.Adafactor(p, lr=1e-3, **kw),
}


def parameters_with_gradients(workload: str) -> Params:
    """The workload's parameters, each with a fixed random gradient (an update reads only those)."""
    params = [p for p in build_module(WORKLOADS[workload], seed=0).parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 0.01
    return params


def cpu_microseconds_per_step(optimizer: torch.optim.Optimizer, steps: int) -> float:
    started = time.process_time()
    for _ in range(steps):
        optimizer.step()
    return (time.process_time() - started) / steps * 1e6


def variants(name: str) -> dict[str, Callable[[Params], torch.optim.Optimizer]]:
    """The optimizers compared for `name`: epochal's, and torch's default and foreach forms where torch has one."""
    built: dict[str, Callable[[Params], torch.optim.Optimizer]] = {"epochal": lambda p: make_optimizer(name, p)}
    if name in TORCH:
        built["torch"] = TORCH[name]
        built["foreach"] = lambda p: TORCH[name](p, foreach=True)
    return built


def measure(workload: str, names: Iterable[str], steps: int, repeats: int) -> None:
    params = parameters_with_gradients(workload)
    print(f"\n{workload}: {sum(p.numel() for p in params):,} parameters in {len(params)} tensors; "
          f"CPU µs per step, median of {repeats} x {steps} steps")
    print("| optimizer | epochal | torch | torch foreach | epochal / torch | epochal / foreach |")
    print("|---|---|---|---|---|---|")
    for name in names:
        optimizers = {label: make(params) for label, make in variants(name).items()}
        for optimizer in optimizers.values():
            cpu_microseconds_per_step(optimizer, 3)  # state allocated, first-step branches taken
        times: dict[str, list[float]] = {label: [] for label in optimizers}
        for _ in range(repeats):
            for label, optimizer in optimizers.items():
                times[label].append(cpu_microseconds_per_step(optimizer, steps))
        median = {label: statistics.median(values) for label, values in times.items()}
        cells = [f"{median[label]:,.0f}" if label in median else "—" for label in ("epochal", "torch", "foreach")]
        ratios = [f"{median['epochal'] / median[label]:.2f}" if label in median else "—" for label in ("torch", "foreach")]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["W1", "W4"])
    parser.add_argument("--optimizers", nargs="+", default=list(KNOWN_OPTIMIZERS), choices=KNOWN_OPTIMIZERS)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for workload in args.workloads:
        measure(workload, args.optimizers, args.steps, args.repeats)


if __name__ == "__main__":
    main()
