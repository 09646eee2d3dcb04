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
from epochal.cli.run_folder import Run, find_runs, load_run
from epochal.cli.seed_groups import group_label, group_runs, metric_keys, seed_table, verdicts
from epochal.cli.table import records
from epochal.analysis.comparison_html import write_comparison
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
              help="Where to save the overlaid curves. Defaults to compare.png beside the first RUN.")
@click.option("--metric", default="val_loss", show_default=True,
              help="The figure of the verdicts: does each configuration beat the first beyond seed noise?")
@click.option("--html", "html", is_flag=True,
              help="Also write compare.html beside the plot: the tables, the verdicts and the curves, one page.")
def compare(runs: tuple[str, ...], out: str | None, metric: str, html: bool) -> None:
    """Overlay the learning curves of RUNS in one PNG and tabulate their best validation figures.

    A folder of runs (`epochal train --seeds N`) counts as one configuration, as do runs whose settings
    differ only in the seed: each figure then gets its mean and 95% confidence interval, and each
    configuration a verdict against the first (Welch's t-test). A fork's curve is marked where it starts.
    """
    loaded, labels = [], []
    for path in runs:
        found = [load_run(path)] if (Path(path) / run_folder.HISTORY_JSON).is_file() else find_runs(path)
        loaded += found
        labels += [group_label(Path(path))] * len(found)
    rows = [figures(run) for run in loaded]
    click.echo(records(rows))
    groups = group_runs(loaded, rows, labels)
    seed_rows, sentences = [], []
    if any(len(group.runs) > 1 for group in groups):
        need("scipy")
        keys = metric_keys(rows)
        if metric not in keys:
            raise CliError(f"--metric {metric} is not a figure of these runs; they have {', '.join(keys)}.")
        seed_rows = seed_table(groups, keys)
        sentences = [str(verdict) for verdict in verdicts(groups, metric)]
        click.echo("\nOver seeds: mean ± half-width of the 95% confidence interval (Student's t)")
        click.echo(records(seed_rows))
        click.echo("\n" + "\n".join(sentences) if sentences else "")
    need("matplotlib")
    target = Path(out) if out else Path(runs[0]).parent / "compare.png"
    histories = {_unique_name(run, loaded): run.history for run in loaded}
    plot_histories(histories).savefig(target, dpi=80)
    click.echo(f"\nCurves of {len(loaded)} runs: {target}")
    if html:
        page = target.with_suffix(".html")
        write_comparison(page, histories, rows, seeds=seed_rows, verdicts=sentences)
        click.echo(f"Report: {page}")


def figures(run: Run) -> dict[str, Any]:
    """A run's key figures: data set, status, epochs, best epoch (by val_loss), validation values there, test, time."""
    history = run.history
    diagnosis = history.diagnose()
    best = diagnosis.best_epoch
    shown = [key for key in history.history if key.startswith("val_") or not diagnosis.has_validation]
    at_best = {key: dict(zip(history.epochs_of(key), history.history[key])).get(best) for key in shown
               if best is not None}
    forked = next((event for event in history.events if event["kind"] == "fork"), None)
    return {
        "run": run.name,
        **({"fork of": fork_label(forked)} if forked is not None else {}),
        "data": run.summary.get("data", run.config.get("data")),
        "status": run.summary.get("status", "running or killed"),
        "epochs": len(history.epoch),
        "best epoch": None if best is None else best + 1,
        **at_best,
        **{f"test {key}": value for key, value in run.summary.get("test", {}).items()},
        "seconds": run.summary.get("seconds"),
    }


def fork_label(event: dict[str, Any]) -> str:
    """`parent@3` (after epoch 3) or `parent@3:5` (after batch 5 of epoch 3): where a fork started, as `--at`."""
    source = Path(str(event.get("source", "")))
    parent = source.parent.parent.name if source.parent.name == run_folder.BACKUPS else source.name
    epoch, batch = event["epoch"], event["batch"]
    return f"{parent}@{epoch}" if not batch else f"{parent}@{epoch + 1}:{batch}"


def _unique_name(run: Run, runs: list[Run]) -> str:
    """The folder name, or the full path where two runs share a name."""
    return run.name if sum(r.name == run.name for r in runs) == 1 else str(run.path)
