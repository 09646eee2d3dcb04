"""MLflowLogger against a real SQLite tracking store, read back with MlflowClient: params, metric
histories equal to the History, artifacts and tags; an unreachable store refused before training; a
store lost mid-run costing one warning, not the run; a resumed fit continuing its MLflow run."""

import socket
import sqlite3
import time
import warnings

import pytest
import torch

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

import epochal  # noqa: E402
from epochal.callbacks import BackupAndRestore, Callback, LambdaCallback  # noqa: E402
from epochal.callbacks.mlflow_logger import MLflowLogger  # noqa: E402
from epochal.saving import load_weights  # noqa: E402


def _fit(callbacks, epochs=3, **options):
    torch.manual_seed(0)
    x = torch.randn(48, 3)
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    history = model.fit(x, x.sum(1, keepdim=True), epochs=epochs, batch_size=12, validation_split=0.25, verbose=0,
                        callbacks=callbacks, **options)
    return model, history


@pytest.fixture
def store(mlflow_store):
    return mlflow_store


def _logger(tmp_path, store, **options):
    return MLflowLogger(store, artifact_location=str(tmp_path / "artifacts"), **options)


def test_a_run_read_back_holds_the_params_the_history_the_artifacts_and_the_diagnosis(tmp_path, store):
    logger = _logger(tmp_path, store, run_name="tiny", params={"data": "toy"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, history = _fit([logger])
    assert not [w for w in caught if "MLflowLogger" in str(w.message)]  # a healthy store: not one failure
    client = MlflowClient(store)
    run = client.get_run(logger.run_id)
    assert (run.info.status, run.info.run_name) == ("FINISHED", "tiny")
    params = run.data.params
    assert {k: params[k] for k in ("epochs", "batch_size", "samples", "loss", "optimizer.name", "optimizer.lr",
                                   "precision", "data")} == {
        "epochs": "3", "batch_size": "12", "samples": "36", "loss": "mean_squared_error", "optimizer.name": "SGD",
        "optimizer.lr": "0.01", "precision": "32", "data": "toy"}
    for key, values in history.history.items():
        assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, key)] == list(enumerate(values))
    assert {a.path for a in client.list_artifacts(logger.run_id)} == {"diagnosis.txt", "history", "report", "weights"}
    local = client.download_artifacts(logger.run_id, "", str(tmp_path / "back"))
    assert epochal.History.load(f"{local}/history/history.json").history == history.history
    assert '<svg class="chart"' in open(f"{local}/report/report.html", encoding="utf-8").read()
    diagnosis = history.diagnose()
    assert diagnosis.best_epoch == 2  # so the best weights are the final ones
    best = torch.nn.Linear(3, 1)
    load_weights(best, f"{local}/weights/best.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(best.state_dict().values(), model.module.state_dict().values()))
    tags = run.data.tags
    assert (tags["epochal.best_epoch"], tags["epochal.onset_epoch"], tags["epochal.phase"]) == (
        "3", "none", diagnosis.phases[-1])
    assert tags["epochal.diagnosis"] == str(diagnosis)


def test_batch_values_every_n_batches_are_logged_with_the_global_batch_as_step(tmp_path, store):
    batch_losses = []
    recorder = LambdaCallback(on_train_batch_end=lambda batch, logs: batch_losses.append(logs["loss"]))
    logger = _logger(tmp_path, store, update_freq=2)
    _fit([recorder, logger], epochs=2)  # 3 batches per epoch
    logged = [(m.step, m.value) for m in MlflowClient(store).get_metric_history(logger.run_id, "batch_loss")]
    assert logged == [(2, batch_losses[1]), (4, batch_losses[3]), (6, batch_losses[5])]


def test_a_step_based_run_logs_every_validation_at_its_step(tmp_path, store):
    logger = _logger(tmp_path, store)
    _, history = _fit([logger], epochs=2, validation_every=2)  # 3 batches per epoch: validations at 2, 3, 4, 6
    client = MlflowClient(store)
    logged = [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "evaluation_mae_vs_iterations")]
    expected = zip(history.validation_steps, history.validation_history["val_mae"])
    assert logged == [(step, pytest.approx(value)) for step, value in expected]
    assert [m.step for m in client.get_metric_history(logger.run_id, "val_mae")] == [0, 1]  # per epoch, as before


def test_an_unreachable_tracking_server_is_refused_before_any_training(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    batches = []
    counter = LambdaCallback(on_train_batch_begin=lambda batch, logs: batches.append(batch))
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(ValueError, match=rf"MLflowLogger cannot reach the tracking store: ConnectionRefusedError: "
                                         rf".*Received: tracking_uri='{uri}'"):
        _fit([counter, MLflowLogger(uri, timeout=2)])
    assert batches == []


def test_a_store_lost_mid_run_warns_once_and_the_training_goes_on(tmp_path, store):
    def drop_tables(epoch, logs):
        if epoch == 1:
            with sqlite3.connect(tmp_path / "mlflow.db") as database:
                database.execute("DROP TABLE metrics")
                database.execute("DROP TABLE latest_metrics")

    logger = _logger(tmp_path, store)
    with pytest.warns(RuntimeWarning) as caught:
        _, history = _fit([LambdaCallback(on_epoch_end=drop_tables), logger], epochs=4)
    [warning] = [w for w in caught if "MLflowLogger" in str(w.message)]
    assert str(warning.message).startswith(
        "MLflowLogger could not log the metrics of epoch 2: OperationalError: no such table: metrics. Training goes on")
    assert history.epoch == [0, 1, 2, 3]


def test_a_store_that_stops_answering_costs_log_timeout_once_not_the_run(tmp_path, store):
    """A store locked by another writer (as a dead HTTP server, it never answers): MLflow would wait, here the
    training waits `log_timeout` seconds once, warns, and the run ends at once without another attempt."""
    locker = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None, check_same_thread=False)
    timings = {}

    def lock_the_store(epoch, logs):
        if epoch == 1:
            locker.execute("BEGIN EXCLUSIVE")
            timings["locked"] = time.perf_counter()

    logger = _logger(tmp_path, store, log_timeout=0.5)
    try:
        with pytest.warns(RuntimeWarning) as caught:
            _, history = _fit([LambdaCallback(on_epoch_end=lock_the_store), logger], epochs=4)
        waited = time.perf_counter() - timings["locked"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    [warning] = [w for w in caught if "MLflowLogger" in str(w.message)]
    assert str(warning.message).startswith(
        "MLflowLogger could not log the metrics of epoch 2: TimeoutError: no answer within 0.5 s. Training goes on")
    assert history.epoch == [0, 1, 2, 3]
    assert waited < 4  # one deadline of 0.5 s; without it MLflow waits ~20 s for the lock here


class _StopOnce(Callback):
    """Interrupts the first fit at the start of epoch 2, as a killed process would (after epoch 1's backup)."""

    fired = False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2 and not _StopOnce.fired:
            _StopOnce.fired = True
            raise KeyboardInterrupt


def test_a_fit_resumed_by_backup_and_restore_continues_the_same_mlflow_run(tmp_path, store):
    def callbacks():
        return [_logger(tmp_path, store), BackupAndRestore(tmp_path / "backup"), _StopOnce()]

    first = callbacks()
    with pytest.raises(KeyboardInterrupt):
        _fit(first, epochs=4)
    second = callbacks()
    _, history = _fit(second, epochs=4)
    assert second[0].run_id == first[0].run_id
    client = MlflowClient(store)
    [run] = client.search_runs([client.get_experiment_by_name("epochal").experiment_id])
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == list(
        enumerate(history.history["loss"]))


def test_bad_arguments_are_refused_when_the_logger_is_made():
    with pytest.raises(ValueError, match="`update_freq` must be 'epoch', 'batch' or a positive integer. "
                                         "Received: update_freq=0"):
        MLflowLogger("sqlite:///x.db", update_freq=0)
    with pytest.raises(ValueError, match="`timeout` must be a positive number of seconds. Received: timeout=0"):
        MLflowLogger("sqlite:///x.db", timeout=0)
    with pytest.raises(ValueError, match="`log_timeout` must be a positive number of seconds. "
                                         "Received: log_timeout=-1"):
        MLflowLogger("sqlite:///x.db", log_timeout=-1)


def test_a_rank_other_than_0_logs_nothing(tmp_path, store, monkeypatch):
    monkeypatch.setattr("epochal.callbacks.mlflow_logger.is_main_process", lambda: False)
    logger = _logger(tmp_path, store)
    _, history = _fit([logger], epochs=2)
    assert history.epoch == [0, 1] and logger.run_id is None
    assert MlflowClient(store).get_experiment_by_name("epochal") is None  # not even contacted
