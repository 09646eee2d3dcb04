"""`epochal train --mlflow [URI]`: the run in the tracking store, and an unreachable store refused up front."""

import socket

import pytest
import tomllib

from epochal.callbacks.history import History

pytest.importorskip("mlflow")


def test_mlflow_alone_logs_to_the_local_sqlite_store_and_keeps_it_in_the_config(tmp_path, mlflow_store, epochal_cli,
                                                                                 monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # `--mlflow` alone means ./mlflow.db (here a fresh, migrated copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out = epochal_cli("train", "--data", "iris", "--epochs", "2", "--verbose", "0", "--name", "tracked",
                            "--mlflow")
    assert code == 0, out
    run_folder = tmp_path / "runs" / "tracked"
    assert tomllib.loads((run_folder / "config.toml").read_text())["mlflow"] == "sqlite:///mlflow.db"
    client = MlflowClient(mlflow_store)
    [run] = client.search_runs([client.get_experiment_by_name("epochal").experiment_id])
    assert (run.info.run_name, run.info.status) == ("tracked", "FINISHED")
    assert (run.data.params["cli.data"], run.data.params["cli.hidden"], run.data.params["optimizer.name"]) == (
        "iris", "[128, 64]", "Adam")
    history = History.load(run_folder / "history.json")
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == \
        history.history["val_accuracy"]


def test_an_unreachable_store_stops_the_command_before_training_and_leaves_no_run(tmp_path, epochal_cli):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out = epochal_cli("train", "--data", "iris", "--epochs", "2", "--verbose", "0", "--out", tmp_path,
                            "--name", "lost", "--mlflow", f"http://127.0.0.1:{port}")
    assert code == 1
    assert out.splitlines()[-1].startswith("Error: MLflowLogger cannot reach the tracking store: ConnectionRefusedError")
    assert "Epoch 1" not in out and not (tmp_path / "lost").exists()
