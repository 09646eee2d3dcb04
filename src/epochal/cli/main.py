"""`epochal`: the command group; every subcommand lives in its own module, imported when it runs.

Importing a command imports torch (about 2 s), so the group lists the commands from the table below
without importing them: `epochal --help` and `epochal --version` answer at once.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from epochal import __version__
from epochal.cli.errors import CliError

# What a user can cause (bad values, files, types); anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError, ImportError)

#: name -> (module, attribute, the first line of its help); tests/cli check each line against the command.
COMMANDS = {
    "diverge": ("epochal.cli.diverge", "diverge",
                "Replay the runs in folders RUN_A and RUN_B from their common start; name the first batch where they part."),
    "export": ("epochal.cli.export", "export",
               "Export the best weights of the run in folder RUN, after checking the program on the held-out test rows."),
    "compare": ("epochal.cli.report", "compare",
                "Overlay the learning curves of RUNS in one PNG and tabulate their best validation figures."),
    "fork": ("epochal.cli.fork", "fork",
             "Continue the run in folder RUN from one of its backups with settings changed, in a new run folder."),
    "report": ("epochal.cli.report", "report",
               "Print the diagnosis of the run in folder RUN and what its best weights get wrong; rewrite its curves."),
    "runs": ("epochal.cli.runs", "runs",
             "List the runs in FOLDER (default: runs) with data set, epochs, best validation figures, test and time."),
    "train": ("epochal.cli.train", "train",
              "Train a model (default: an MLP on scikit-learn's digits) with early stopping, then test it."),
    "tune": ("epochal.cli.tune", "tune", "Measure batch sizes or learning rates on your data and recommend one."),
}


class _Group(click.Group):
    """Commands loaded on use; user errors raised inside them printed as one line (`--debug`: tracebacks)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)  # as click's own listing
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=line).get_short_help_str(limit))
                                for name, (_, _, line) in sorted(COMMANDS.items())])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _USER_ERRORS as error:
            if ctx.params.get("debug"):
                raise
            raise CliError(str(error).splitlines()[0] if str(error) else type(error).__name__) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(version=__version__, prog_name="epochal")
def main(debug: bool) -> None:
    """Train PyTorch models the Keras way from the command line, and analyse the runs."""


if __name__ == "__main__":
    main()
