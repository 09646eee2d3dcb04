"""The analysis kept in a run folder: the diagnosis (text and JSON) and the learning-curve PNG."""

from __future__ import annotations

from pathlib import Path

import click

from epochal._optional import require
from epochal.cli import run_folder
from epochal.analysis.diagnosis import Diagnosis
from epochal.callbacks.history import History


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
