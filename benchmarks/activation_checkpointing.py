"""What `compile(checkpoint_modules=...)` saves: peak RSS of a small transformer's `fit` on the CPU, without and
with each encoder layer checkpointed, and what it costs per step.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 taskset -c 1 python benchmarks/activation_checkpointing.py --repeats 3

Each measurement is a fresh process (peak RSS is a process's high-water mark: `ru_maxrss`), the two
variants alternated within each repeat; medians with min–max. "Activations" is the peak during `fit`
minus the high-water mark just before it (model, data and imports). The model: a 6-layer
`torch.nn.TransformerEncoder` (d_model 256, 8 heads, feed-forward 1024, dropout 0.1, pre-norm), batch 8 of
256 positions of 256 features, mean-pooled into 10 classes; Adam; one epoch of `--batches` batches,
seconds per step measured after the first. Both variants end with the same weights (checked).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import epochal

VARIANTS = {"none": None, "layers": [torch.nn.TransformerEncoderLayer]}
LAYERS, WIDTH, HEADS, FEED_FORWARD, POSITIONS, BATCH = 6, 256, 8, 1024, 256, 8


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(WIDTH, HEADS, FEED_FORWARD, dropout=0.1, batch_first=True,
                                                 norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = torch.nn.Linear(WIDTH, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


class StepTimer(epochal.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        self.ends.append(time.perf_counter())


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(variant: str, batches: int) -> dict[str, float]:
    """One fit in this process: its peak RSS, the high-water mark before it, seconds per step, a weight checksum."""
    torch.manual_seed(0)
    module = Classifier()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH * batches, POSITIONS, WIDTH, generator=generator)
    y = torch.randint(0, 10, (BATCH * batches,), generator=generator)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  checkpoint_modules=VARIANTS[variant])
    timer = StepTimer()
    before = peak_mib()
    torch.manual_seed(2)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    seconds = (timer.ends[-1] - timer.ends[0]) / (len(timer.ends) - 1)
    checksum = float(sum(p.detach().double().sum() for p in module.parameters()))
    return {"peak": peak_mib(), "before": before, "seconds_per_step": seconds, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3, help="training batches (steps) per fit, at least 2")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(arguments.child, arguments.batches)))
        return
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for repeat in range(arguments.repeats):
        for variant in VARIANTS:
            done = subprocess.run([sys.executable, __file__, "--child", variant, "--batches", str(arguments.batches)],
                                  capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(done.stdout))
            print(f"repeat {repeat + 1}, {variant}: {runs[variant][-1]}", file=sys.stderr)
    checksums = {run["checksum"] for variant in runs.values() for run in variant}
    print(f"torch {torch.__version__}, {arguments.repeats} repeats, {arguments.batches} steps; same final weights in "
          f"every run: {len(checksums) == 1}\n")
    print("| checkpoint_modules | peak RSS, MiB | activations (peak − before fit), MiB | s/step |")
    print("|---|---|---|---|")
    for variant, results in runs.items():
        cells = [_cell([r["peak"] for r in results]), _cell([r["peak"] - r["before"] for r in results]),
                 _cell([r["seconds_per_step"] for r in results], "{:.2f}")]
        print(f"| {'none' if VARIANTS[variant] is None else '[TransformerEncoderLayer]'} | " + " | ".join(cells) + " |")


def _cell(values: list[float], form: str = "{:.0f}") -> str:
    return f"{form.format(statistics.median(values))} ({form.format(min(values))}–{form.format(max(values))})"


if __name__ == "__main__":
    main()
