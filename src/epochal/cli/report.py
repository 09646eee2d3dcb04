"""`epochal report` (one run's diagnosis and curves) and `epochal compare` (several runs side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from epochal.cli import run_folder
from epochal.analysis.interpretation import Interpretation
from epochal.cli.analysis import write_analysis, write_html_report
from epochal.cli.errors import CliError, need
from epochal.cli.interpretation import interpret_run
from epochal.cli.run_folder import Run, load_run
from epochal.cli.table import records
from epochal.analysis.plotting import plot_histories


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--html", "html", is_flag=True,
              help=f"Also write {run_folder.REPORT}: one self-contained page with the curves (hover for values), "
                   "diagnosis, settings, timings and interpretation.")
def report(run: str, html: bool) -> None:
    """Print the diagnosis of the run in folder RUN and what its best weights get wrong; rewrite its curves."""
    loaded = load_run(run)
    diagnosis = write_analysis(loaded.path, loaded.history)
    click.echo(str(diagnosis))
    try:
        interpretation: Interpretation | None = interpret_run(loaded)
        click.echo(f"\n{interpretation}")
    except (CliError, ValueError, ImportError) as error:
        interpretation = None
        click.echo(f"\nNo interpretation: {error.message if isinstance(error, CliError) else error}")
    if (loaded.path / run_folder.CURVES).is_file():
        click.echo(f"\nLearning curves: {loaded.path / run_folder.CURVES}")
    if html:
        path = write_html_report(loaded, diagnosis, interpretation)
        click.echo(f"Report: {path}")


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Where to save the overlaid curves. Defaults to compare.png beside the first run.")
def compare(runs: tuple[str, ...], out: str | None) -> None:
    """Overlay the learning curves of RUNS in one PNG and tabulate their best validation figures."""
    loaded = [load_run(path) for path in runs]
    click.echo(records([figures(run) for run in loaded]))
    need("matplotlib")
    target = Path(out) if out else loaded[0].path.parent / "compare.png"
    plot_histories({_unique_name(run, loaded): run.history for run in loaded}).savefig(target, dpi=80)
    click.echo(f"\nCurves of {len(loaded)} runs: {target}")


def figures(run: Run) -> dict[str, Any]:
    """A run's key figures: data set, status, epochs, best epoch (by val_loss), validation values there, test, time."""
    history = run.history
    diagnosis = history.diagnose()
    best = diagnosis.best_epoch
    shown = [key for key in history.history if key.startswith("val_") or not diagnosis.has_validation]
    at_best = {key: dict(zip(history.epochs_of(key), history.history[key])).get(best) for key in shown
               if best is not None}
    return {
        "run": run.name,
        "data": run.summary.get("data", run.config.get("data")),
        "status": run.summary.get("status", "running or killed"),
        "epochs": len(history.epoch),
        "best epoch": None if best is None else best + 1,
        **at_best,
        **{f"test {key}": value for key, value in run.summary.get("test", {}).items()},
        "seconds": run.summary.get("seconds"),
    }


def _unique_name(run: Run, runs: list[Run]) -> str:
    """The folder name, or the full path where two runs share a name."""
    return run.name if sum(r.name == run.name for r in runs) == 1 else str(run.path)
