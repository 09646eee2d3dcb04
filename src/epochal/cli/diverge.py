"""`epochal diverge`: where two runs part — the first batch after which their weights differ, and why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from epochal.callbacks.callback import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.cli import run_folder
from epochal.cli.config import resolve
from epochal.cli.models import build_model
from epochal.cli.options import data_for
from epochal.cli.run_folder import Run, load_run
from epochal.cli.train import run_callbacks
from epochal.replay import diverge as replay_runs
from epochal.replay.stored import compare_backups
from epochal.training.fork import describe_position


@click.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--forward", is_flag=True,
              help="Also run that batch's forward again in both and name the first module whose output differs.")
def diverge(run_a: str, run_b: str, forward: bool) -> None:
    """Replay the runs in folders RUN_A and RUN_B from their common start; name the first batch where they part.

    The common start is the last backup both runs kept with the same weights and optimizer state (else
    their beginning). Both are replayed from there with their own settings, batch by batch, and the first
    batch after which the weights differ is named, with each parameter that differs and by how much.
    A difference the stored backups show but the replay here does not make comes from elsewhere: another
    machine or torch build, nondeterministic kernels, or how the run got there.
    """
    a, b = load_run(run_a), load_run(run_b)
    stored = compare_backups(a.path / run_folder.BACKUPS, b.path / run_folder.BACKUPS,
                             sources=(a.config.get("fork_of"), b.config.get("fork_of")))
    if stored.common is not None and stored.common in stored.last:
        ended = "both" if stored.last[0] == stored.last[1] else "run A" if stored.common == stored.last[0] else "run B"
        click.echo(f"The backups of both runs are the same {describe_position(*stored.common)}, where {ended} "
                   "ended: they do not part while both train.")
        return
    if stored.common is not None:
        click.echo(f"The backups of both runs are the same {describe_position(*stored.common)}: replaying from there.")
    else:
        click.echo("No backup both runs kept is the same: replaying both from their start.")
    if stored.first_difference is not None:
        click.echo(f"Their backups differ {describe_position(*stored.first_difference)}"
                   + (f" (largest: {stored.differences[0]})" if stored.differences else "") + ".")
    starts = stored.files or (None, None)
    found = replay_runs(_replay(a, starts[0]), _replay(b, starts[1]), forward=forward)
    click.echo(f"\n{found}")
    if not found.parted and stored.first_difference is not None:
        click.echo("\nReplayed here, the runs do not part, although their backups differ: the difference does not "
                   "come from their settings but from where or how they ran (another machine or torch build, "
                   "nondeterministic kernels, an interruption).")


def _replay(run: Run, start: str | None) -> Callable[[Callback], Any]:
    """`train(probe)` for `replay.diverge`: the run trained again with its settings (no files), from `start`
    (one of its backups) or where it began (a fork: its parent's backup)."""
    config = resolve(run.config)
    data = data_for(config)

    def train(probe: Callback) -> Any:
        model = build_model(config, data)
        return model.fit(data.x_train, data.y_train, epochs=config.epochs, batch_size=config.batch_size,
                         validation_split=config.validation_split, verbose=0, resume_from=start or config.fork_of,
                         callbacks=[EarlyStopping(patience=config.patience, restore_best_weights=True),
                                    *run_callbacks(config), probe])

    return train
