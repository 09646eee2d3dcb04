"""`epochal tune batch-size` and `epochal tune lr`: measured choices on the user's own data."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import click
import torch

from epochal.callbacks.callback import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.monitoring import resolve_mode
from epochal.cli.config import TrainConfig
from epochal.cli.data import Data
from epochal.cli.errors import CliError, need
from epochal.cli.models import build_model
from epochal.cli.options import config_from, data_for, training_options
from epochal.cli.table import records
from epochal.tune.lr_finder import find_lr

#: A batch size whose best validation metric is within this fraction of the best size's counts as as good.
TOLERANCE = 0.01


@click.group()
def tune() -> None:
    """Measure batch sizes or learning rates on your data and recommend one."""


@tune.command("batch-size")
@training_options
@click.option("--sizes", default="16,32,64,128,256,512", show_default=True, help="Batch sizes to try.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Where to save the plot. Defaults to <out>/tune-batch-size.png.")
def batch_size(sizes: str, plot_path: str | None, **flags: Any) -> None:
    """Train once per batch size; tabulate speed, memory, best validation metric and when it came."""
    config = config_from(flags)
    if not config.validation_split:
        raise CliError("tune batch-size compares validation metrics: give --validation-split above 0.")
    data = data_for(config)
    rows = [_measure(config, data, size) for size in _sizes(sizes, data, config)]
    metric = next(key for key in rows[0] if key.startswith("best "))
    recommended = _recommend(rows, metric)
    click.echo(records(rows))
    click.echo("\npeak MB: " + ("torch.cuda.max_memory_allocated during the run" if torch.cuda.is_available() else
               "parameters, gradients, optimizer state and saved activations of one training step"))
    click.echo(f"Recommended: --batch-size {recommended}: within {TOLERANCE:.0%} of the best {metric[5:]} "
               "and the least time to reach it.")
    need("matplotlib")
    from epochal.analysis.plotting import plot_batch_sizes

    target = Path(plot_path or Path(config.out) / "tune-batch-size.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    plot_batch_sizes([r["batch size"] for r in rows], [r["samples/s"] for r in rows],
                     [r[metric] for r in rows], metric[5:], recommended).savefig(target, dpi=80)
    click.echo(f"Plot: {target}")


@tune.command("lr")
@training_options
@click.option("--start-lr", default=1e-7, show_default=True, help="First learning rate of the sweep.")
@click.option("--end-lr", default=10.0, show_default=True, help="Last learning rate of the sweep.")
@click.option("--steps", default=100, show_default=True, help="Batches in the sweep, one rate each.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Where to save the plot. Defaults to <out>/tune-lr.png.")
def lr(start_lr: float, end_lr: float, steps: int, plot_path: str | None, **flags: Any) -> None:
    """Sweep the learning rate exponentially (weights restored after) and suggest the steepest descent."""
    config = config_from(flags)
    data = data_for(config)
    model = build_model(config, data)
    fitted = int(len(data.x_train) * (1 - config.validation_split))
    result = find_lr(model, data.x_train[:fitted], data.y_train[:fitted], start_lr=start_lr, end_lr=end_lr,
                     steps=steps, batch_size=config.batch_size)
    click.echo(f"Swept {len(result.lrs)} batches from lr {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}"
               + (" (stopped: the loss blew up)" if len(result.lrs) < steps else ""))
    if result.suggestion is None:
        raise CliError("Too few finite losses to suggest a learning rate: lower --end-lr or raise --steps.")
    click.echo(f"Suggested learning rate: {result.suggestion:.2g} (steepest fall of the smoothed loss); "
               f"train with --lr {result.suggestion:.2g}")
    need("matplotlib")
    target = Path(plot_path or Path(config.out) / "tune-lr.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    result.plot().savefig(target, dpi=80)
    click.echo(f"Plot: {target}")


class _TrainClock(Callback):
    """Training seconds per epoch, validation excluded (the clock stops when validation starts)."""

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._start, self._stop = time.perf_counter(), cast("float | None", None)

    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._stop = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.seconds.append((self._stop or time.perf_counter()) - self._start)


def _sizes(text: str, data: Data, config: TrainConfig) -> list[int]:
    try:
        sizes = sorted({int(size) for size in text.split(",")})
    except ValueError:
        raise CliError(f"--sizes takes whole numbers such as 16,32,64. Received: {text!r}") from None
    rows = int(len(data.x_train) * (1 - config.validation_split))
    kept = [size for size in sizes if 0 < size <= rows]
    if not kept:
        raise CliError(f"No batch size in --sizes {text} fits the {rows} training rows.")
    return kept


def _measure(config: TrainConfig, data: Data, size: int) -> dict[str, Any]:
    """One candidate: fit with early stopping; throughput, memory, best validation metric, when and how fast."""
    model = build_model(config, data)
    on_gpu = model.device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(model.device)
    clock = _TrainClock()
    history = model.fit(data.x_train, data.y_train, batch_size=size, epochs=config.epochs,
                        validation_split=config.validation_split, verbose=0,
                        callbacks=[EarlyStopping(patience=config.patience), clock])
    memory = torch.cuda.max_memory_allocated(model.device) / 2**20 if on_gpu else _step_memory(config, data, size)
    val_keys = [key for key in history.history if key.startswith("val_")]
    diagnosis = history.diagnose(next((key for key in val_keys if key != "val_loss"), "val_loss"))
    fitted = int(len(data.x_train) * (1 - config.validation_split))
    row = {"batch size": size, "samples/s": round(fitted * len(clock.seconds) / sum(clock.seconds)),
           "peak MB": round(memory, 2), f"best {diagnosis.monitor}": diagnosis.best_value,
           "at epoch": None, "seconds to best": None}
    if diagnosis.best_epoch is not None:  # None: the metric was never finite
        best = diagnosis.epochs.index(diagnosis.best_epoch)
        row.update({"at epoch": best + 1, "seconds to best": round(sum(clock.seconds[: best + 1]), 2)})
    return row


def _step_memory(config: TrainConfig, data: Data, size: int) -> float:
    """MB held during one training step on CPU: parameters, gradients, optimizer state, saved activations."""
    model = build_model(config, data)
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.train_on_batch(data.x_train[:size], data.y_train[:size])
    state = [t for s in model.optimizer.state.values() for t in s.values()]  # type: ignore[union-attr]
    return (saved + 2 * _bytes(model.module.parameters()) + _bytes(state)) / 2**20


def _bytes(tensors: Iterable[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _recommend(rows: list[dict[str, Any]], metric: str) -> int:
    """The quickest to its best among the sizes whose best metric is within TOLERANCE of the overall best."""
    mode = resolve_mode("auto", metric[5:])
    measured = [row for row in rows if row["at epoch"] is not None]
    if not measured:
        raise CliError(f"No batch size reached a finite {metric[5:]}: lower --lr (`epochal tune lr` suggests one).")
    values = [row[metric] for row in measured]
    top = max(values) if mode == "max" else min(values)
    good = [row for row in measured if abs(row[metric] - top) <= TOLERANCE * abs(top)]
    return min(good, key=lambda row: row["seconds to best"])["batch size"]
