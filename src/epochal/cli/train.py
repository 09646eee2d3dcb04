"""`epochal train`: fit a model on a data set from the command line and keep the run in a folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import click

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.callbacks.callback import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.rollback import Rollback
from epochal.callbacks.progress import format_logs
from epochal.cli import run_folder
from epochal.cli.analysis import write_analysis, write_html_report
from epochal.cli.config import TrainConfig, load_toml, to_toml
from epochal.cli.data import Data
from epochal.cli.errors import CliError, need
from epochal.analysis.interpretation import Interpretation
from epochal.cli.interpretation import interpret_test
from epochal.cli.models import build_model
from epochal.cli.options import config_from, data_for, training_options
from epochal.cli.recorder import RunRecorder
from epochal.cli.report import figures
from epochal.cli.run_folder import load_run
from epochal.cli.seed_groups import group_runs, metric_keys, seed_table
from epochal.cli.table import records
from epochal.callbacks.mlflow_logger import MLflowLogger, resolve_tracking_uri
from epochal.files.temporary import remove_orphans
from epochal.callbacks.history import History
from epochal.model import Model

_DEFAULT_STORE = "default"  # what `--mlflow` alone stands for until resolved


@click.command()
@training_options
@click.option("--name", help="The run folder's name. Defaults to <date>-<time>-<data>.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False),
              help="Continue the interrupted run in this folder exactly where it stopped (its own settings).")
@click.option("--verbose", type=click.Choice(["auto", "0", "1", "2"]), default="auto", show_default=True,
              help="0 silent, 1 a progress bar, 2 one line per epoch; auto picks 1 on a terminal.")
@click.option("--mlflow", is_flag=False, flag_value=_DEFAULT_STORE, default=None, metavar="[URI]",
              help="Also log the run to MLflow at this tracking URI; alone, MLFLOW_TRACKING_URI or "
                   "sqlite:///mlflow.db (open it with `mlflow ui`). Needs `pip install 'epochal[mlflow]'`.")
@click.option("--keep-backups", help="Backups kept in the run folder: all (one per epoch, so `epochal fork` can "
                                     "start from any), a number of the newest, or 0 to delete them when the run "
                                     "finishes. Defaults to all.")
@click.option("--backup-freq", type=int, help="Also back up every N batches: points inside an epoch that "
                                              "`epochal fork --at EPOCH:BATCH` can start from. Defaults to none.")
@click.option("--validation-every", type=int, help="Also validate every N training batches (recorded by step in "
                                                  "history.json). Defaults to once per epoch.")
@click.option("--max-steps", type=int, help="Train at most N batches in all, across epochs. Defaults to no limit.")
@click.option("--max-time", type=float, help="A wall-clock budget in seconds: when spent, training pauses at a batch "
                                             "boundary and --resume continues it exactly. Defaults to no limit.")
@click.option("--rollback", is_flag=True, default=None,
              help="When a batch's loss becomes NaN or spikes, go back to the last good state, skip that batch, "
                   "halve the learning rate and carry on (Rollback, 3 retries).")
@click.option("--seeds", type=int, help="Train the same settings with this many seeds (--seed, --seed+1, ...), one "
                                        "run folder each in a folder named after the run; `epochal compare` then "
                                        "reports means and 95% confidence intervals.")
def train(resume: str | None, verbose: str, seeds: int | None, **flags: Any) -> None:
    """Train a model (default: an MLP on scikit-learn's digits) with early stopping, then test it.

    The run folder keeps the resolved config, the history (CSV and JSON), the best weights, the
    learning curves, the diagnosis and report.html, and a backup after every epoch (BackupAndRestore):
    for --resume while it trains, and for `epochal fork` after. Run with no arguments to see it work.
    """
    folder = _resumable(Path(resume)) if resume else None
    config = config_from(flags, base=load_toml(folder / run_folder.CONFIG) if folder else None)
    if config.mlflow == _DEFAULT_STORE:
        config.mlflow = resolve_tracking_uri(None)  # kept in config.toml, so --resume logs to the same store
    if config.mlflow:
        need("mlflow")  # before a run folder exists, so a missing extra leaves nothing behind
    backups(config)  # checked before a run folder exists
    if seeds is not None:
        if folder is not None:
            raise CliError("--seeds starts new runs; resume each seed's run folder on its own with --resume.")
        train_seeds(config, seeds, verbose)
        return
    data = data_for(config)
    if folder:
        click.echo(f"Resuming {folder}")
        remove_orphans(folder)  # temporary files of a write the interruption cut short
    train_in_folder(config, data, folder, verbose)


def train_seeds(config: TrainConfig, count: int, verbose: str) -> None:
    """`count` runs of `config` with seeds `seed, seed+1, ...`, each in `seed-N` of one new folder; then each
    figure's mean and 95% confidence interval over them."""
    if isinstance(count, bool) or count < 2:
        raise CliError(f"--seeds must be at least 2: seed noise is measured over several runs. Received: {count}")
    need("scipy")  # for the intervals at the end: before any run starts
    group = run_folder.new_run_folder(config.out, config.name, Path(config.data).stem)
    for offset in range(count):
        seeded = dataclasses.replace(config, seed=config.seed + offset, out=str(group),
                                     name=f"{run_folder.SEED_PREFIX}{config.seed + offset}")
        click.echo(f"{'' if not offset else chr(10)}Seed {seeded.seed} ({offset + 1} of {count}) in {group}")
        train_in_folder(seeded, data_for(seeded), None, verbose)
    runs = run_folder.find_runs(group)
    rows = [figures(run) for run in runs]
    click.echo(f"\nOver {count} seeds: mean ± half-width of the 95% confidence interval (Student's t)")
    click.echo(records(seed_table(group_runs(runs, rows, [group.name] * len(runs)), metric_keys(rows))))
    click.echo(f"Runs saved in {group}/ (`epochal compare {group} OTHER` tells it from another configuration)")


def train_in_folder(config: TrainConfig, data: Data, folder: Path | None, verbose: str) -> Path:
    """Train `config` on `data` in `folder` (resumed from its backups) or in a new run folder; returns it.

    A fork's config names the backup it starts from (`fork_of`); the run's own backups come first.
    """
    model = build_model(config, data)
    fresh = folder is None
    if folder is None:
        folder = run_folder.new_run_folder(config.out, config.name, data.name)
        run_folder.write_text(folder / run_folder.CONFIG, to_toml(config))
    click.echo(_describe(config, data, model))
    recorder = RunRecorder(folder)
    stopper = EarlyStopping(patience=config.patience, restore_best_weights=True)
    trackers = [MLflowLogger(config.mlflow, run_name=folder.name, params={"cli": dataclasses.asdict(config)})] \
        if config.mlflow else []
    try:
        model.fit(data.x_train, data.y_train, epochs=config.epochs, batch_size=config.batch_size,
                  validation_split=config.validation_split,
                  callbacks=[stopper, *run_callbacks(config), recorder, *trackers,
                             backups(config, folder / run_folder.BACKUPS)],
                  verbose=int(verbose) if verbose != "auto" else "auto", resume_from=config.fork_of,
                  validation_every=config.validation_every, max_steps=config.max_steps, max_time=config.max_time)
    except KeyboardInterrupt:  # SIGINT or SIGTERM: BackupAndRestore has written a backup after the batch
        run_folder.write_json(folder / run_folder.SUMMARY, {"status": "interrupted", "seconds": recorder.seconds})
        raise CliError(f"Interrupted. Continue with: epochal train --resume {folder}") from None
    except (ValueError, TypeError):
        if fresh and not (folder / run_folder.HISTORY_JSON).exists():
            shutil.rmtree(folder)  # a bad setting caught before the first epoch leaves no empty run behind
        raise
    # A fit that returns unfinished ran out of `max_time` (any other stop closes the run): the backup it
    # just wrote mid-epoch is where --resume continues.
    state = model.training_state
    if state is not None and not state.finished:
        run_folder.write_json(folder / run_folder.SUMMARY, {"status": "paused", "seconds": recorder.seconds})
        click.echo(f"Paused: --max-time {config.max_time:g}s ran out. Continue with: epochal train --resume {folder}")
        return folder
    _finish(folder, config, data, model, recorder, stopper)
    return folder


def run_callbacks(config: TrainConfig) -> list[Callback]:
    """The callbacks besides EarlyStopping that shape how the run trains (replays need them too)."""
    return [Rollback()] if config.rollback else []


def backups(config: TrainConfig, folder: Path | None = None) -> BackupAndRestore:
    """The run's BackupAndRestore, as `keep_backups` and `backup_freq` ask (in `folder`, else only checked)."""
    keep = config.keep_backups
    if keep != "all" and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise CliError(f"--keep-backups must be all or a whole number >= 0. Received: {keep!r}")
    if config.backup_freq is not None and config.backup_freq < 1:
        raise CliError(f"--backup-freq must be a positive number of batches. Received: {config.backup_freq}")
    return BackupAndRestore(folder if folder is not None else ".", save_freq=config.backup_freq or "epoch",
                            keep=max(keep, 2) if isinstance(keep, int) else None, delete_checkpoint=keep == 0)


def _finish(folder: Path, config: TrainConfig, data: Data, model: Model, recorder: RunRecorder,
            stopper: EarlyStopping) -> None:
    history = recorder.history
    test = model.evaluate(data.x_test, data.y_test, batch_size=config.batch_size, verbose=0)
    model.save_weights(folder / run_folder.BEST_WEIGHTS)
    diagnosis = write_analysis(folder, history)
    best = diagnosis.best_epoch
    run_folder.write_json(folder / run_folder.SUMMARY, {
        "status": "finished", "data": data.name, "task": data.task, "model": config.model,
        "epochs": len(history.epoch), "stopped_early": stopper.stopped, "monitor": diagnosis.monitor,
        "best_epoch": None if best is None else best + 1,  # counted from 1, as the printed text counts
        "best": {k: _at(history, k, best) for k in history.history},
        "test": test, "seconds": round(recorder.seconds, 3),
    })
    weights = f"best epoch {best + 1}" if best is not None else "last epoch"
    click.echo(f"\nTest on {len(data.y_test)} held-out rows ({weights} weights): {format_logs(test)}")
    click.echo(f"Trained {len(history.epoch)} epochs in {recorder.seconds:.1f}s"
               + (f", stopped early by EarlyStopping(patience={config.patience})" if stopper.stopped else ""))
    try:
        interpretation: Interpretation | None = interpret_test(model, data)
    except ImportError as error:  # torchmetrics is an extra: the report goes without its interpretation
        interpretation = None
        click.echo(f"No interpretation in the report: {error}")
    report = write_html_report(load_run(folder), diagnosis, interpretation)
    click.echo(f"\n{diagnosis}\n\nReport: {report}\nRun saved in {folder}/")


def _describe(config: TrainConfig, data: Data, model: Model) -> str:
    fitted = int(len(data.x_train) * (1 - config.validation_split))
    kind = f"{len(data.classes)} classes" if data.classes is not None else "regression"
    widths = "-".join(map(str, [data.x_train.shape[1], *config.hidden, data.outputs]))
    network = f"an MLP {widths}" if config.model == "mlp" else config.model
    parameters = sum(p.numel() for p in model.module.parameters())
    return (f"Training {network} ({parameters:,} parameters) on {data.name} ({kind}): {fitted} rows to fit, "
            f"{len(data.x_train) - fitted} to validate, {len(data.x_test)} held out for the test")


def _resumable(folder: Path) -> Path:
    """`folder`, if it holds a run that can be resumed; else an error saying why not."""
    if not (folder / run_folder.CONFIG).is_file():
        raise CliError(f"{folder} has no {run_folder.CONFIG}: --resume takes a folder that `epochal train` made.")
    summary = folder / run_folder.SUMMARY
    finished = summary.is_file() and json.loads(summary.read_text()).get("status") == "finished"
    if finished or not (folder / run_folder.BACKUPS).is_dir():
        raise CliError(f"{folder} has no backup to resume from: the run finished, or stopped before its first epoch. "
                       f"`epochal fork {folder} --at EPOCH --set ...` continues a run with other settings.")
    return folder


def _at(history: History, key: str, epoch: int | None) -> float | None:
    return dict(zip(history.epochs_of(key), history.history[key])).get(epoch) if epoch is not None else None
