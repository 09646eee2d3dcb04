"""Command-line errors: one line saying what is wrong and how to fix it, never a traceback."""

from __future__ import annotations

from types import ModuleType

import click

from epochal._optional import require


class CliError(click.ClickException):
    """A user-facing error; click prints it as `Error: <message>` and exits with status 1."""


def need(module: str) -> ModuleType:
    """Import an optional dependency, or fail with the `pip install 'epochal[...]'` that adds it."""
    try:
        return require(module)
    except ImportError as error:
        raise CliError(str(error)) from None
