"""Every command has --help; user mistakes are one line saying how to fix them, never a traceback."""

import importlib
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

COMMANDS = [[], ["train"], ["report"], ["compare"], ["runs"], ["tune"], ["tune", "batch-size"], ["tune", "lr"],
            ["export"], ["fork"], ["diverge"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "epochal")
def test_help(command, epochal_cli):
    code, out = epochal_cli(*command, "--help")
    assert code == 0 and out.startswith("Usage: ") and "--help" in out


@pytest.fixture
def table_csv(tmp_path):
    frame = pd.DataFrame({"height": np.arange(20.0), "weight": np.arange(20.0), "label": ["a", "b"] * 10})
    frame.to_csv(tmp_path / "table.csv", index=False)
    return tmp_path / "table.csv"


@pytest.mark.parametrize("args, message", [
    (["--target", "labl"], "Unknown column 'labl' for --target in {csv}. Columns: height, weight, label"),
    ([], "--target is required with a data file: name the column to predict. Columns: height, weight, label"),
    (["--target", "label", "--optimizer", "adamm"], "Unknown optimizer: 'adamm'. Known optimizers: sgd, adam"),
    (["--target", "label", "--batch-size", "0"], "`batch_size` must be a positive integer"),
    (["--target", "label", "--max-steps", "0"], "`max_steps` must be a positive integer. Received: max_steps=0"),
    (["--target", "label", "--max-time", "-5"], "`max_time` must be a positive, finite number of seconds. "
                                                "Received: max_time=-5.0"),
    (["--target", "label", "--hidden", "wide"], "`hidden` takes whole numbers such as 128,64. Received: 'wide'"),
    (["--target", "label", "--model", "nowhere:make"], "Cannot import 'nowhere' for --model"),
])
def test_train_errors_are_one_line_with_the_fix(args, message, table_csv, epochal_cli):
    code, out = epochal_cli("train", "--data", table_csv, "--out", table_csv.parent / "runs", "--verbose", "0", *args)
    assert code == 1
    assert out.splitlines()[-1].startswith("Error: " + message.format(csv=table_csv))
    assert out.count("Error") == 1 and "Traceback" not in out
    assert not (table_csv.parent / "runs").exists() or not any((table_csv.parent / "runs").iterdir())


@pytest.mark.parametrize("column, value, args, message", [
    ("label", None, ["--lr", "-1"], "--lr must be a finite number >= 0. Received: -1.0"),
    ("label", "a", [], "The target of {csv} has a single class ('a'): there is nothing to classify. Choose another --target, or --task regression."),
    ("height", np.inf, [], "height of {csv} hold infinite or missing values: fix or drop those rows first."),
])
def test_set_ups_that_would_train_without_complaint_are_refused(column, value, args, message, table_csv, epochal_cli):
    if value is not None:
        frame = pd.read_csv(table_csv)
        frame[column] = value
        frame.to_csv(table_csv, index=False)
    code, out = epochal_cli("train", "--data", table_csv, "--target", "label", "--out", table_csv.parent / "runs",
                            "--verbose", "0", *args)
    assert (code, out.splitlines()[-1]) == (1, "Error: " + message.format(csv=table_csv))


def test_help_lists_the_commands_without_importing_torch():
    from epochal.cli.main import COMMANDS

    for name, (module, attribute, line) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert command.help.split("\n\n")[0].replace("\n", " ") == line, name
    script = ("import sys\nfrom click.testing import CliRunner\nfrom epochal.cli.main import main\n"
              "print(CliRunner().invoke(main, ['--help']).output)\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert "train    Train a model" in done.stdout and done.stdout.splitlines()[-1] == "False", done.stderr


def test_unknown_data_and_config_keys(tmp_path, epochal_cli):
    code, out = epochal_cli("train", "--data", "mnist")
    assert (code, out.splitlines()[0]) == (1, "Error: --data must be one of digits, iris, wine, breast_cancer, "
                                              "diabetes or a .csv, .parquet, .npz file. Received: 'mnist'")
    (tmp_path / "bad.toml").write_text("epocs = 3\n")
    code, out = epochal_cli("train", "--config", tmp_path / "bad.toml")
    assert code == 1 and out.startswith(f"Error: Unknown key(s) epocs in {tmp_path / 'bad.toml'}. Known keys: data,")


def test_a_subprocess_error_has_no_traceback(tmp_path, epochal_process):
    done = epochal_process("train", "--data", "missing.csv", "--target", "y", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == "Error: No such file: missing.csv\n" and "Traceback" not in done.stdout
