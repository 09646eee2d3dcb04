"""`epochal runs`: the runs found in a folder with their key figures."""

from __future__ import annotations

import click

from epochal.cli.report import figures
from epochal.cli.run_folder import find_runs
from epochal.cli.table import records


@click.command()
@click.argument("folder", default="runs", type=click.Path(file_okay=False))
def runs(folder: str) -> None:
    """List the runs in FOLDER (default: runs) with data set, epochs, best validation figures, test and time."""
    found = find_runs(folder)
    if not found:
        click.echo(f"No runs in {folder}/ yet: `epochal train` makes one.")
        return
    click.echo(records([figures(run) for run in found]))
