"""`epochal export RUN`: a trained run's best weights as a program that runs without epochal, checked first."""

from __future__ import annotations

from pathlib import Path

import click

from epochal.cli import run_folder
from epochal.cli.config import load_toml
from epochal.cli.errors import CliError
from epochal.cli.models import build_model
from epochal.cli.options import config_from, data_for
from epochal.export import FORMATS, ExportCheckError

_SUFFIXES = {name: program.suffix for name, program in FORMATS.items()}
RTOL = 1e-5  # the largest difference allowed, relative to an output's largest value


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "format_", type=click.Choice(list(FORMATS)), default="torch.export", show_default=True,
              help="torch.export writes a .pt2 program (torch.export.load); onnx an ONNX model (needs epochal[onnx]).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="The file to write. Defaults to RUN/model.pt2 or RUN/model.onnx.")
def export(run: str, format_: str, out: str | None) -> None:
    """Export the best weights of the run in folder RUN, after checking the program on the held-out test rows."""
    folder = Path(run)
    weights = folder / run_folder.BEST_WEIGHTS
    if not (folder / run_folder.CONFIG).is_file() or not weights.is_file():
        raise CliError(f"{folder} holds no finished run ({run_folder.CONFIG} and {run_folder.BEST_WEIGHTS}): "
                       "export takes a folder that `epochal train` completed.")
    config = config_from({}, base=load_toml(folder / run_folder.CONFIG))
    data = data_for(config)
    model = build_model(config, data)
    model.load_weights(weights)
    target = Path(out) if out else folder / f"model{_SUFFIXES[format_]}"
    try:
        result = model.export(target, format_, example=data.x_train[:max(config.batch_size, 2)],
                              check_data=data.x_test, batch_size=config.batch_size, rtol=RTOL)
    except ExportCheckError as error:
        raise CliError(str(error)) from None
    click.echo(f"Exported {folder.name} as {format_} to {result.path}")
    click.echo(f"Checked on the {result.checked_samples} held-out test rows "
               f"({result.checked_batches} batch{'es' if result.checked_batches != 1 else ''}): "
               f"largest difference {result.largest_difference:.2g} of an output's largest value (limit {RTOL:g})")
