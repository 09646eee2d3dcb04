"""`epochal`: the command group; every subcommand lives in its own module."""

from __future__ import annotations

from typing import Any

import click

from epochal import __version__
from epochal.cli.errors import CliError
from epochal.cli.export import export
from epochal.cli.report import compare, report
from epochal.cli.runs import runs
from epochal.cli.train import train
from epochal.cli.tune import tune

# What a user can cause (bad values, files, types); anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError, ImportError)


class _Group(click.Group):
    """A group that prints user errors raised inside commands as one line (`--debug` shows tracebacks)."""

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


main.add_command(train)
main.add_command(report)
main.add_command(compare)
main.add_command(runs)
main.add_command(tune)
main.add_command(export)

if __name__ == "__main__":
    main()
