"""`epochal fork`: continue a run from one of its backups with some settings changed, in a new run folder."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import click
import tomllib

from epochal.cli import run_folder
from epochal.cli.config import FIELDS, resolve
from epochal.cli.errors import CliError
from epochal.cli.options import data_for
from epochal.cli.run_folder import load_run
from epochal.cli.train import backups, train_in_folder
from epochal.training.fork import describe_position, find_backup, read_fork_source

#: Settings a fork may change, and why the others may not.
FORKABLE = ("lr", "batch_size", "epochs", "patience", "dropout", "rollback", "threads", "keep_backups", "backup_freq",
            "validation_every", "max_steps", "max_time")
_FIXED = {**{key: "it is the model's architecture" for key in ("model", "hidden")},
          **{key: "it decides the data (which rows train, validate and test)" for key in
             ("data", "target", "task", "test_split", "validation_split", "seed")},
          **{key: "the parent's optimizer state, loss and metrics continue" for key in ("optimizer", "loss", "metrics")},
          "mlflow": "a fork never logs into its parent's MLflow run; train anew with --mlflow"}
_ALIASES = {"learning_rate": "lr"}
_AT = re.compile(r"^(\d+)(?::(\d+))?$")


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--at", "at", required=True, metavar="EPOCH[:BATCH]",
              help="Where to fork: after epoch EPOCH (counted from 1, as printed), or after batch BATCH of it.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help=f"A setting to change from there (repeatable): {', '.join(FORKABLE)} (learning_rate = lr).")
@click.option("--name", help="The fork's folder name, beside RUN. Defaults to <run>-fork-EPOCH[-BATCH].")
@click.option("--verbose", type=click.Choice(["auto", "0", "1", "2"]), default="auto", show_default=True,
              help="0 silent, 1 a progress bar, 2 one line per epoch; auto picks 1 on a terminal.")
def fork(run: str, at: str, settings: tuple[str, ...], name: str | None, verbose: str) -> None:
    """Continue the run in folder RUN from one of its backups with settings changed, in a new run folder.

    Up to the fork point the new run is RUN: weights, optimizer state, callbacks, History, data order and
    random state all come from RUN's backup, so with no --set it repeats RUN exactly. RUN is only read.
    `epochal compare RUN FORK` draws them on one plot, the fork point marked.
    """
    parent = load_run(run)
    epoch, batch = _position(at)
    changes = _changes(settings)
    source = Path(find_backup(parent.path / run_folder.BACKUPS, epoch, batch)).resolve()
    read_fork_source(str(source))  # a damaged backup is refused before any folder exists
    config = resolve(parent.config, changes)
    config = dataclasses.replace(config, out=str(parent.path.parent), mlflow=None, fork_of=str(source),
                                 name=name or _default_name(parent.name, epoch, batch))
    backups(config)
    click.echo(f"Forking {parent.path} {describe_position(*((epoch, 0) if batch is None else (epoch - 1, batch)))}"
               + (f" with {', '.join(f'{key}={value}' for key, value in changes.items())}" if changes else
                  " with no setting changed"))
    train_in_folder(config, data_for(config), None, verbose)


def _position(at: str) -> tuple[int, int | None]:
    match = _AT.match(at.strip())
    if match is None:
        raise CliError(f"--at takes EPOCH or EPOCH:BATCH, counted from 1 (e.g. 10 or 10:5). Received: {at!r}")
    return int(match.group(1)), None if match.group(2) is None else int(match.group(2))


def _default_name(parent: str, epoch: int, batch: int | None) -> str:
    """`<parent>-fork-EPOCH[-BATCH]`: no `:` in it, which Windows refuses in a folder name."""
    return f"{parent}-fork-{epoch}" + ("" if batch is None else f"-{batch}")


def _changes(settings: tuple[str, ...]) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs as config values (read as TOML values: numbers, true/false, else text)."""
    changes: dict[str, Any] = {}
    for item in settings:
        key, equals, text = item.partition("=")
        key = _ALIASES.get(key.strip().replace("-", "_"), key.strip().replace("-", "_"))
        if not equals or not text.strip():
            raise CliError(f"--set takes KEY=VALUE (e.g. learning_rate=1e-4). Received: {item!r}")
        if key in _FIXED:
            raise CliError(f"--set {key} cannot change in a fork: {_FIXED[key]}. Settings a fork may change: "
                           f"{', '.join(FORKABLE)}.")
        if key not in FORKABLE:
            raise CliError(f"--set {key}: unknown setting. Settings a fork may change: {', '.join(FORKABLE)} "
                           f"(all settings: {', '.join(FIELDS)}).")
        try:
            changes[key] = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            changes[key] = text.strip()
    return changes
