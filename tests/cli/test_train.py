"""`epochal train`: the no-argument run, files and factories, config layering, resume."""

import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest
import tomllib

import epochal.training.step_control as step_control
from epochal.cli.recorder import RunRecorder
from epochal.callbacks.history import History


def test_train_with_no_arguments_trains_digits_and_reports_the_test(tmp_path, epochal_process, is_png):
    done = epochal_process("train", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("Training an MLP 64-128-64-10 (17,226 parameters) on digits (10 classes): 1149 rows to fit, "
                          "288 to validate, 360 held out for the test\nEpoch 1/50 - ")
    assert "Test on 360 held-out rows (best epoch" in out and "accuracy: 0.9" in out
    assert "Diagnosis of" in out and "Recommendation:" in out
    [run] = (tmp_path / "runs").iterdir()
    assert {p.name for p in run.iterdir()} == {
        "config.toml", "history.csv", "history.json", "summary.json", "best.safetensors",
        "learning_curve.png", "diagnosis.txt", "diagnosis.json", "report.html", "backup"}
    assert len(list((run / "backup").glob("backup-*.pt"))) == summary_epochs(run), "one backup per epoch, to fork from"
    assert is_png(run / "learning_curve.png")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test"]["accuracy"] > 0.9
    printed = int(re.search(r"best epoch (\d+) weights", out).group(1))
    assert summary["best_epoch"] == printed, "summary.json counts epochs from 1, as the printed text does"
    assert History.load(run / "history.csv").epoch == list(range(summary["epochs"]))
    assert tomllib.loads((run / "config.toml").read_text())["hidden"] == [128, 64]


def summary_epochs(run):
    return json.loads((run / "summary.json").read_text())["epochs"]


def test_csv_regression_with_config_file_and_overriding_flags(tmp_path, epochal_cli):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120),
                          "colour": rng.choice(["red", "blue"], size=120)})
    frame["price"] = 3 * frame.a - frame.b + (frame.colour == "red") + 50
    frame.to_csv(tmp_path / "houses.csv", index=False)
    (tmp_path / "run.toml").write_text('epochs = 9\nhidden = [8]\nlr = 0.01\nout = "experiments"\n')
    code, out = epochal_cli("train", "--data", tmp_path / "houses.csv", "--target", "price", "--config",
                            tmp_path / "run.toml", "--epochs", "3", "--verbose", "0", "--name", "houses",
                            "--out", tmp_path / "experiments")
    assert code == 0, out
    assert "Training an MLP 4-8-1 (49 parameters) on houses (regression): 76 rows to fit" in out
    config = tomllib.loads((tmp_path / "experiments" / "houses" / "config.toml").read_text())
    assert (config["epochs"], config["hidden"], config["lr"], config["target"]) == (3, [8], 0.01, "price")
    history = History.load(tmp_path / "experiments" / "houses" / "history.json")
    assert list(history.history) == ["loss", "mae", "val_loss", "val_mae"] and len(history.epoch) == 3


def test_npz_data_and_a_model_factory(tmp_path, monkeypatch, epochal_cli):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 5)).astype(np.float32)
    np.savez(tmp_path / "points.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "def make(inputs, outputs):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(inputs, outputs), torch.nn.Softmax(dim=-1))\n")
    monkeypatch.chdir(tmp_path)
    code, out = epochal_cli("train", "--data", "points.npz", "--model", "mynet:make", "--epochs", "2",
                            "--verbose", "0", "--name", "npz")
    assert code == 0, out
    assert "Training mynet:make (12 parameters) on points (2 classes)" in out


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, epochal_cli, monkeypatch):
    common = ["--data", "iris", "--out", tmp_path, "--verbose", "0", "--patience", "50", "--epochs", "6"]
    assert epochal_cli("train", *common, "--name", "whole")[0] == 0

    def stop_after_three_epochs(self, epoch, logs=None):
        recorded(self, epoch, logs)
        if epoch == 2:
            raise KeyboardInterrupt  # as Ctrl-C between epochs, after the backup of epoch 3

    recorded = RunRecorder.on_epoch_end
    monkeypatch.setattr(RunRecorder, "on_epoch_end", stop_after_three_epochs)
    code, out = epochal_cli("train", *common, "--name", "parts")
    assert (code, out.splitlines()[-1]) == (1, f"Error: Interrupted. Continue with: epochal train --resume "
                                               f"{tmp_path / 'parts'}")
    assert json.loads((tmp_path / "parts" / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    code, out = epochal_cli("train", "--resume", tmp_path / "parts", "--verbose", "0")
    assert code == 0 and out.startswith(f"Resuming {tmp_path / 'parts'}\n")
    assert (tmp_path / "parts" / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()
    code, out = epochal_cli("train", "--resume", tmp_path / "parts")
    assert code == 1 and "has no backup to resume from: the run finished" in out


def test_step_flags_validate_by_step_and_stop_after_max_steps(tmp_path, epochal_cli):
    """iris trains on 96 rows in batches of 32: 3 batches per epoch, so step 7 is epoch 3's first batch."""
    code, out = epochal_cli("train", "--data", "iris", "--out", tmp_path, "--verbose", "0", "--patience", "50",
                            "--epochs", "6", "--validation-every", "2", "--max-steps", "7", "--name", "steps")
    assert code == 0, out
    history = History.load(tmp_path / "steps" / "history.json")
    assert history.epoch == [0, 1, 2] and history.params["max_steps"] == 7
    assert history.validation_steps == [2, 3, 4, 6, 7]  # mid-epoch points, and every epoch's own validation
    assert history.validation_history["val_loss"][1] == history.history["val_loss"][0]


def test_max_time_pauses_the_run_and_resume_continues_it_exactly(tmp_path, epochal_cli, monkeypatch):
    common = ["--data", "iris", "--out", tmp_path, "--verbose", "0", "--patience", "50", "--epochs", "4"]
    assert epochal_cli("train", *common, "--name", "whole")[0] == 0
    ticks = itertools.count()  # the clock as StepControl reads it: one second later at every read
    monkeypatch.setattr(step_control, "monotonic", lambda: next(ticks))
    with pytest.warns(UserWarning, match="max_time=5s ran out"):
        code, out = epochal_cli("train", *common, "--max-time", "5", "--name", "budget")
    assert (code, out.splitlines()[-1]) == (0, f"Paused: --max-time 5s ran out. Continue with: epochal train "
                                               f"--resume {tmp_path / 'budget'}")
    assert json.loads((tmp_path / "budget" / "summary.json").read_text())["status"] == "paused"
    monkeypatch.setattr(step_control, "monotonic", lambda: 0)  # a fresh budget that never runs out
    code, out = epochal_cli("train", "--resume", tmp_path / "budget", "--verbose", "0")
    assert code == 0, out
    assert (tmp_path / "budget" / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()
    assert json.loads((tmp_path / "budget" / "summary.json").read_text())["status"] == "finished"
