"""The analysis kept in a run folder: the diagnosis (text and JSON), the learning-curve PNG and the HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from epochal._optional import require
from epochal.analysis.diagnosis import Diagnosis
from epochal.analysis.html_report import write_report
from epochal.analysis.interpretation import Interpretation
from epochal.callbacks.history import History
from epochal.cli import run_folder
from epochal.cli.run_folder import Run


def write_analysis(folder: Path, history: History) -> Diagnosis:
    """Diagnose `history` into `folder` and draw its curves there (skipped, with a note, without matplotlib)."""
    diagnosis = history.diagnose()
    run_folder.write_diagnosis(folder, diagnosis)
    try:
        require("matplotlib")
    except ImportError as error:
        click.echo(f"No {run_folder.CURVES}: {error}")
        return diagnosis
    history.plot().savefig(folder / run_folder.CURVES, dpi=80)
    return diagnosis


def write_html_report(run: Run, diagnosis: Diagnosis, interpretation: Interpretation | None) -> Path:
    """`report.html` in the run folder: curves, diagnosis, the run's settings and test figures, interpretation."""
    path = run.path / run_folder.REPORT
    settings = {**run.config, **{f"test {key}": value for key, value in run.summary.get("test", {}).items()}}
    if "seconds" in run.summary:
        settings["training seconds"] = run.summary["seconds"]
    write_report(path, run.history, diagnosis=diagnosis, interpretation=interpretation, title=f"Run {run.name}",
                 settings=settings)
    return path
