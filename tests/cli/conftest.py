"""Helpers for the command-line tests: run `epochal` in-process (fast) or as a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import epochal
from epochal.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def epochal_cli():
    """Run `epochal ARGS` in-process; returns the exit code and everything it printed."""
    return _in_process


@pytest.fixture(scope="session")
def epochal_process():
    """Run `python -m epochal.cli.main ARGS` as a subprocess in `cwd`, with this checkout importable."""
    return _subprocess


@pytest.fixture(scope="session")
def is_png():
    """Whether a file is a PNG that matplotlib reads as an image."""
    return _is_png


def _in_process(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    src = str(Path(epochal.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "epochal.cli.main", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _is_png(path: Path) -> bool:
    image = pytest.importorskip("matplotlib.image")
    return path.read_bytes()[:8] == PNG_MAGIC and image.imread(path).ndim == 3
