"""A run's folder under `runs/`: what `train` writes and what `report`, `compare` and `runs` read."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomllib

from epochal.cli.errors import CliError
from epochal.analysis.diagnosis import Diagnosis
from epochal.callbacks.history import History
from epochal.saving import atomic_write

CONFIG = "config.toml"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
SUMMARY = "summary.json"
BACKUPS = "backup"
BEST_WEIGHTS = "best.safetensors"
CURVES = "learning_curve.png"
DIAGNOSIS_TXT = "diagnosis.txt"
DIAGNOSIS_JSON = "diagnosis.json"
REPORT = "report.html"
SEED_PREFIX = "seed-"  # a run inside a folder of seeds (`train --seeds`)


@dataclass
class Run:
    """A run folder read back: config, history and summary (no summary yet while running or if killed)."""

    path: Path
    config: dict[str, Any]
    history: History
    summary: dict[str, Any]

    @property
    def name(self) -> str:
        """The folder's name; inside a folder of seeds (`train --seeds`), `group/seed-N`."""
        if self.path.name.startswith(SEED_PREFIX):
            return f"{self.path.parent.name}/{self.path.name}"
        return self.path.name


def new_run_folder(out: str, name: str | None, data_name: str) -> Path:
    """A fresh folder `out/<name>` (default `<date>-<time>-<data>`), suffixed `-2`, `-3`... if taken."""
    base = Path(out) / (name or f"{time.strftime('%Y%m%d-%H%M%S')}-{data_name}")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_text(path: Path, text: str) -> None:
    """A text file, written atomically."""
    with atomic_write(path, text=True) as handle:
        handle.write(text)


def write_json(path: Path, record: dict[str, Any]) -> None:
    """A JSON file, written atomically."""
    write_text(path, json.dumps(record, indent=1, default=str) + "\n")


def write_history(folder: Path, history: History) -> None:
    """The history as CSV and JSON."""
    history.to_csv(folder / HISTORY_CSV)
    history.to_json(folder / HISTORY_JSON)


def write_diagnosis(folder: Path, diagnosis: Diagnosis) -> None:
    """The diagnosis as the text `report` prints and as JSON."""
    write_text(folder / DIAGNOSIS_TXT, str(diagnosis) + "\n")
    write_json(folder / DIAGNOSIS_JSON, asdict(diagnosis))


def load_run(path: str | Path) -> Run:
    """The run in `path`; a folder without a history is an error that says what a run folder holds."""
    folder = Path(path)
    if not (folder / HISTORY_JSON).is_file():
        raise CliError(f"{folder} is not an epochal run folder (no {HISTORY_JSON}); "
                       "`epochal runs` lists the runs under a folder.")
    summary_file, config_file = folder / SUMMARY, folder / CONFIG
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    config = tomllib.loads(config_file.read_text()) if config_file.is_file() else {}
    return Run(folder, config, History.load(folder / HISTORY_JSON), summary)


def find_runs(folder: str | Path) -> list[Run]:
    """Every run folder inside `folder`, oldest name first, and those in its folders of seeds (`train --seeds`)."""
    root = Path(folder)
    if not root.is_dir():
        raise CliError(f"No such folder: {root}. Runs are written under runs/ (train --out).")
    found = []
    for path in sorted(root.iterdir()):
        if (path / HISTORY_JSON).is_file():
            found.append(load_run(path))
        elif path.is_dir():
            found += [load_run(inner) for inner in sorted(path.iterdir()) if (inner / HISTORY_JSON).is_file()]
    return found
