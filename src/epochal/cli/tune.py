"""`epochal tune batch-size` and `epochal tune lr`: measured choices on the user's own data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from epochal.cli.errors import CliError, need
from epochal.cli.models import build_model
from epochal.cli.options import config_from, data_for, training_options
from epochal.cli.table import records
from epochal.tune import BatchSizeTrial, find_lr
from epochal.tune import batch_size as find_batch_size

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
    """Find the largest batch that trains, then train once per size up to it; tabulate speed, memory,
    best validation metric and when it came (`epochal.tune.batch_size`)."""
    config = config_from(flags)
    if not config.validation_split:
        raise CliError("tune batch-size compares validation metrics: give --validation-split above 0.")
    data = data_for(config)
    model = build_model(config, data)
    result = find_batch_size(model, data.x_train, data.y_train, sizes=_sizes(sizes),
                             epochs=config.epochs, patience=config.patience,
                             validation_split=config.validation_split, tolerance=TOLERANCE)
    metric = f"best {result.monitor}"
    click.echo(records([_row(trial, metric) for trial in result.trials]))
    click.echo("\npeak MB: one training step's " + ("peak of torch.cuda.max_memory_allocated"
                                                    if model.device.type == "cuda" else
                                                    "parameters, gradients, optimizer state and saved activations"))
    click.echo(f"Largest batch that trains: {result.largest}" + (
        f" (memory budget {result.budget / 2**20:,.0f} MB)" if result.budget is not None else ""))
    if result.recommended is None:
        raise CliError(f"No batch size reached a finite {result.monitor}: lower --lr (`epochal tune lr` suggests one).")
    click.echo(f"Recommended: --batch-size {result.recommended}: within {TOLERANCE:.0%} of the best "
               f"{result.monitor} and the least time to reach it.")
    need("matplotlib")
    from epochal.analysis.plotting import plot_batch_sizes

    target = Path(plot_path or Path(config.out) / "tune-batch-size.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    plot_batch_sizes([t.batch_size for t in result.trials], [t.samples_per_second for t in result.trials],
                     [t.best_value for t in result.trials], result.monitor, result.recommended).savefig(target, dpi=80)
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


def _sizes(text: str) -> list[int]:
    try:
        return [int(size) for size in text.split(",")]
    except ValueError:
        raise CliError(f"--sizes takes whole numbers such as 16,32,64. Received: {text!r}") from None


def _row(trial: BatchSizeTrial, metric: str) -> dict[str, Any]:
    """One line of the table."""
    return {"batch size": trial.batch_size, "samples/s": round(trial.samples_per_second),
            "peak MB": round(trial.step_bytes / 2**20, 2), metric: trial.best_value,
            "at epoch": None if trial.best_epoch is None else trial.best_epoch + 1,
            "seconds to best": None if trial.seconds_to_best is None else round(trial.seconds_to_best, 2)}
