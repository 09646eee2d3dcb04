"""Runs that differ only in their seed, grouped as one configuration: each figure's mean and 95% confidence
interval, and whether a configuration beats the first beyond seed noise (for `compare` and `train --seeds`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from epochal.analysis.seed_stats import Verdict, compare, estimate
from epochal.cli import run_folder
from epochal.cli.run_folder import Run

#: Settings that do not make another configuration: the seed (the point), and where and how a run is kept.
NOT_CONFIGURATION = ("seed", "name", "out", "threads", "mlflow", "keep_backups", "backup_freq")
_NOT_FIGURES = ("run", "data", "status", "epochs", "best epoch", "seconds", "fork of")


@dataclass
class Group:
    """One configuration's runs (one per seed)."""

    name: str
    runs: list[Run]
    figures: list[dict[str, Any]]

    def values(self, key: str) -> list[float]:
        return [float(row[key]) for row in self.figures if isinstance(row.get(key), (int, float))]


def group_runs(runs: list[Run], figures: list[dict[str, Any]], labels: list[str | None]) -> list[Group]:
    """Runs grouped by configuration: those given as one folder of seeds (`labels`, the folder's name) stay
    together; the others join runs with the same settings but the seed. A fork is always its own group."""
    groups: dict[Any, Group] = {}
    for run, row, label in zip(runs, figures, labels):
        config = {key: value for key, value in run.config.items() if key not in NOT_CONFIGURATION}
        key = ("folder", label) if label else ("fork", str(run.path)) if run.config.get("fork_of") else (
            "config", repr(sorted(config.items())))
        groups.setdefault(key, Group(label or "", [], [])).runs.append(run)
        groups[key].figures.append(row)
    for group in groups.values():
        if not group.name:
            names = [run.name for run in group.runs]
            common = os.path.commonprefix(names).rstrip("-_.")
            group.name = names[0] if len(names) == 1 else common if len(common) >= 3 else f"{names[0]} (+{len(names) - 1})"
    return list(groups.values())


def metric_keys(figures: list[dict[str, Any]]) -> list[str]:
    """The figures worth a mean: the metrics at the best epoch and on the test, in first-seen order."""
    keys = dict.fromkeys(key for row in figures for key, value in row.items()
                         if key not in _NOT_FIGURES and isinstance(value, (int, float)))
    return list(keys)


def seed_table(groups: list[Group], keys: list[str]) -> list[dict[str, Any]]:
    """One row per configuration: its runs and each figure's `mean ± half-width of the 95% interval`."""
    return [{"configuration": group.name, "seeds": len(group.runs),
             **{key: str(estimate(group.values(key))) if group.values(key) else None for key in keys}}
            for group in groups]


def verdicts(groups: list[Group], metric: str) -> list[Verdict | str]:
    """Each configuration against the first on `metric` (a sentence when one has fewer than 2 seeds)."""
    found: list[Verdict | str] = []
    first = groups[0]
    for group in groups[1:]:
        a, b = first.values(metric), group.values(metric)
        if min(len(a), len(b)) < 2:
            found.append(f"{first.name} vs {group.name} on {metric}: no verdict, it needs at least 2 seeds of each "
                         f"({len(a)} and {len(b)}); `epochal train --seeds 5` trains them.")
        else:
            found.append(compare(first.name, a, group.name, b, metric))
    return found


def group_label(path: Path) -> str | None:
    """The folder's name when `path` is a folder of seeds (`train --seeds`: runs named `seed-N`), else None."""
    if (path / run_folder.HISTORY_JSON).is_file():
        return None
    runs = [inner for inner in path.iterdir() if (inner / run_folder.HISTORY_JSON).is_file()]
    return path.name if runs and all(inner.name.startswith(run_folder.SEED_PREFIX) for inner in runs) else None
