"""MLflowLogger: a run in an MLflow tracking store — settings as params, epoch logs as metrics, the best
weights, the History and the HTML report as artifacts, the diagnosis as tags."""

from __future__ import annotations

import importlib.metadata
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from epochal._optional import require
from epochal.analysis.diagnosis import can_diagnose
from epochal.analysis.html_report import write_report
from epochal.analysis.run_params import flat_params
from epochal.callbacks.callback import Callback, compile_config_of
from epochal.callbacks.deadline import call_with_deadline
from epochal.callbacks.history import History
from epochal.callbacks.run_position import first_global_batch, step_tag, validates_by_step
from epochal.callbacks.update_freq import batch_interval
from epochal.monitoring import initial_best, is_improvement, resolve_mode
from epochal.parallel.process import is_main_process
from epochal.saving import save_weights

#: MLflow's own default store: a SQLite file in the working folder, which `mlflow ui` opens as is.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_MAX_PARAM_LENGTH = 6000  # MLflow refuses longer param values
_MAX_TAG_LENGTH = 5000
_BATCH_LIMIT = 1000  # metrics per `log_batch` request


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """`tracking_uri`, else MLflow's `MLFLOW_TRACKING_URI` variable, else `sqlite:///mlflow.db`."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class MLflowLogger(Callback):
    """Log a `fit` to MLflow: one run with params, per-epoch metrics (step = epoch) and artifacts.

    - **Params**: `History.params` (the fit arguments and step options), `model.get_compile_config()`
      (optimizer and its hyperparameters, loss) and `params`, flattened (`optimizer.lr`).
    - **Metrics**: every key of the epoch logs at step = epoch index; with `update_freq` set to `"batch"`
      or N, also `batch_<key>` every N batches (step = global batch count), sent with the epoch's metrics
      in one request. A run that validates every N batches (`fit(validation_every=N)`) also logs each
      validation as it ends under TensorBoard's names, `val_loss` as `evaluation_loss_vs_iterations`
      (step = the global step).
    - **Artifacts**: `weights/best.safetensors` each time `monitor` improves (the last weights without
      validation, where `val_loss` falls back to `loss` as the diagnosis does), and at the end
      `history/history.json` and `.csv`, `report/report.html` (`History.to_html`) and `diagnosis.txt`.
    - **Tags**: `epochal.best_epoch`, `epochal.onset_epoch`, `epochal.phase` (of the last epoch) and
      `epochal.diagnosis` (the text), from `History.diagnose`.

    The store is reached in `on_train_begin`: an unreachable one is a ValueError before any training (an
    HTTP server gets `timeout` seconds to answer, not MLflow's minutes of retries). After that, a store that
    fails, or does not answer within `log_timeout` seconds, warns once and training goes on; that run then
    logs nothing more. Under torch.distributed rank 0 alone logs. Resumed by `BackupAndRestore`, the logger
    continues the same MLflow run.

    Args:
        tracking_uri: Any MLflow tracking URI (`sqlite:///path.db`, `http://host:5000`, `databricks`...).
            Defaults to `None`: `MLFLOW_TRACKING_URI` if set, else `sqlite:///mlflow.db` in the working
            folder (open it with `mlflow ui`).
        experiment_name: The experiment, created if missing. Defaults to `"epochal"`.
        run_name: The run's name. Defaults to `None`: MLflow picks one.
        update_freq: `"epoch"`, `"batch"` or N: also log batch values every N batches. Defaults to `"epoch"`.
        params: More settings to log as params (e.g. data set, architecture). Defaults to `None`.
        tags: Tags for the run. Defaults to `None`.
        monitor: The key whose best epoch's weights are logged. Defaults to `"val_loss"`.
        mode: `"min"`, `"max"` or `"auto"` for `monitor`. Defaults to `"auto"`.
        log_weights: Log the best weights as a safetensors artifact. Defaults to `True`.
        artifact_location: Where a newly created experiment keeps artifacts. Defaults to `None`: MLflow's
            default (`./mlruns` for a SQLite store).
        timeout: Seconds an HTTP tracking server gets to answer the first contact. Defaults to `10.0`.
        log_timeout: Seconds training waits for each later logging call (metrics of an epoch, an artifact
            upload) before it gives up on the store: the most a store gone mid-run can cost (MLflow's own
            retries would take minutes). Raise it to upload large weights over a slow link. Defaults to `30.0`.
    """

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "epochal", run_name: str | None = None,
                 *, update_freq: str | int = "epoch", params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, str] | None = None, monitor: str = "val_loss", mode: str = "auto",
                 log_weights: bool = True, artifact_location: str | None = None, timeout: float = 10.0,
                 log_timeout: float = 30.0) -> None:
        super().__init__()
        self._interval = batch_interval(update_freq)
        resolve_mode(mode, monitor)
        _check_seconds("timeout", timeout)
        _check_seconds("log_timeout", log_timeout)
        self._mlflow = require("mlflow")  # fail now if the extra is missing, not after an epoch
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name, self.run_name = experiment_name, run_name
        self.extra_params, self.tags = dict(params or {}), dict(tags or {})
        self.monitor, self.mode, self.log_weights = monitor, mode, log_weights
        self.artifact_location, self.timeout, self.log_timeout = artifact_location, float(timeout), float(log_timeout)
        if self._interval is not None:
            # Listen to batches only when asked, so epoch-only logging costs nothing per batch.
            self.on_train_batch_end = self._on_train_batch_end  # type: ignore[method-assign]
        self.run_id: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.run_id = None
        self._client: Any = None
        self._experiment_id: str | None = None
        self._history = History()
        self._best = initial_best(resolve_mode(self.mode, self.monitor))
        self._global_batch = 0
        self._pending: list[Any] = []
        self._failed = False

    # -- hooks ------------------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()
        self._history.on_train_begin()
        self._history.params = dict(self.params)
        self._global_batch = first_global_batch(self.params)
        if is_main_process():
            self._connect()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._history.on_epoch_begin(epoch)
        if is_main_process():
            self._safely("start the MLflow run", self._start_run)

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._global_batch += 1
        if self._global_batch % self._interval == 0 and is_main_process():  # type: ignore[operator]
            metric = self._mlflow.entities.Metric
            stamp = _now()
            self._pending += [metric(f"batch_{key}", float(value), stamp, self._global_batch)
                              for key, value in (logs or {}).items()]

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        self._history.on_validation_end(step, logs)  # kept in the history.json artifact
        if not validates_by_step(self.params) or not is_main_process():
            return
        metric = self._mlflow.entities.Metric
        stamp = _now()
        metrics = [metric(step_tag(key), float(value), stamp, step) for key, value in (logs or {}).items()]
        self._safely(f"log the validation at step {step}", self._log_metrics, metrics)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = dict(logs or {})
        self._history.on_epoch_end(epoch, logs)
        if not is_main_process():
            return
        metric = self._mlflow.entities.Metric
        stamp = _now()
        metrics, self._pending = self._pending + [metric(k, float(v), stamp, epoch) for k, v in logs.items()], []
        self._safely(f"log the metrics of epoch {epoch + 1}", self._log_metrics, metrics)
        if self.log_weights and self._improved(logs):
            self._safely(f"log the weights of epoch {epoch + 1}", self._log_best_weights)

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if is_main_process():
            self._safely("start the MLflow run", self._start_run)
            self._safely("log the history, report and diagnosis", self._log_summary)
            self._safely("end the MLflow run", self._end_run)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id or "", "history": self._history.state_dict(), "best": self._best,
                "global_batch": self._global_batch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.run_id = str(state["run_id"]) or None
        self._history.load_state_dict(state["history"])
        self._best = float(state["best"])
        self._global_batch = int(state["global_batch"])

    # -- talking to MLflow ------------------------------------------------------------------------

    def _connect(self) -> None:
        """Reach the store and find (or make) the experiment; any failure is a ValueError before training."""
        uri = self.tracking_uri
        try:
            if uri.startswith(("http://", "https://")):
                _answers(uri, self.timeout)
            self._client = self._mlflow.MlflowClient(tracking_uri=uri)
            experiment = self._client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (experiment.experiment_id if experiment is not None else
                                   self._client.create_experiment(self.experiment_name, self.artifact_location))
        except Exception as error:  # MLflow, SQLAlchemy, OS and network errors alike mean "cannot log there"
            raise ValueError(
                f"MLflowLogger cannot reach the tracking store: {_describe(error)}. Start "
                "the server or fix the URI; leave `tracking_uri=None` for a local SQLite file (sqlite:///mlflow.db). "
                f"Received: tracking_uri={uri!r}") from error

    def _start_run(self) -> None:
        if self._client is None:
            return
        if self.run_id is not None:  # resumed from a backup (or already started): carry on in that run
            if self._client.get_run(self.run_id).info.status != "RUNNING":
                self._client.update_run(self.run_id, status="RUNNING")
            return
        run = self._client.create_run(self._experiment_id, run_name=self.run_name,
                                      tags={"epochal.version": _version(), **self.tags})
        self.run_id = run.info.run_id
        param = self._mlflow.entities.Param
        values = [param(key[:250], value[:_MAX_PARAM_LENGTH]) for key, value in self._settings().items()]
        for start in range(0, len(values), 100):  # MLflow takes at most 100 params per request
            self._client.log_batch(self.run_id, params=values[start:start + 100])

    def _settings(self) -> dict[str, str]:
        return {**flat_params(self.params), **flat_params(compile_config_of(self.model)),
                **flat_params(self.extra_params)}

    def _log_metrics(self, metrics: list[Any]) -> None:
        if self.run_id is None:
            return
        for start in range(0, len(metrics), _BATCH_LIMIT):
            self._client.log_batch(self.run_id, metrics=metrics[start:start + _BATCH_LIMIT])

    def _improved(self, logs: Mapping[str, float]) -> bool:
        key = self.monitor if self.monitor in logs else self.monitor.removeprefix("val_")
        value = logs.get(key)
        if value is None or not math.isfinite(value):
            return False
        if not is_improvement(value, self._best, mode=resolve_mode(self.mode, key)):
            return False
        self._best = value
        return True

    def _log_best_weights(self) -> None:
        if self.run_id is None:
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "best.safetensors"
            save_weights(self.model.module, path)  # type: ignore[union-attr]
            self._client.log_artifact(self.run_id, str(path), "weights")

    def _log_summary(self) -> None:
        if self.run_id is None or not self._history.epoch:
            return
        diagnosis = self._history.diagnose(self.monitor) if can_diagnose(self._history, self.monitor) else None
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            self._history.to_json(root / "history.json")
            self._history.to_csv(root / "history.csv")
            write_report(root / "report.html", self._history, diagnosis=diagnosis, title=f"Run {self.run_id}",
                         settings=self._settings())
            files: list[tuple[str, str | None]] = [("history.json", "history"), ("history.csv", "history"),
                                                   ("report.html", "report")]
            if diagnosis is not None:
                (root / "diagnosis.txt").write_text(str(diagnosis) + "\n", encoding="utf-8")
                files.append(("diagnosis.txt", None))
            for name, folder_name in files:
                self._client.log_artifact(self.run_id, str(root / name), folder_name)
        if diagnosis is None:
            return
        phase = diagnosis.phases[-1]
        self._client.set_tag(self.run_id, "epochal.phase", phase)
        self._client.set_tag(self.run_id, "epochal.diagnosis", str(diagnosis)[:_MAX_TAG_LENGTH])
        for name, epoch in (("best_epoch", diagnosis.best_epoch), ("onset_epoch", diagnosis.onset_epoch)):
            self._client.set_tag(self.run_id, f"epochal.{name}", "none" if epoch is None else str(epoch + 1))

    def _end_run(self) -> None:
        if self.run_id is not None:
            self._client.set_terminated(self.run_id, "FINISHED")

    def _safely(self, what: str, action: Any, *args: Any) -> None:
        """Run `action` within `log_timeout`; a failure or no answer warns once and stops this run's logging,
        never the training."""
        if self._failed or self._client is None:
            return
        try:
            call_with_deadline(self.log_timeout, action, *args)
        except Exception as error:  # a lost log line must never lose the training run (the rule)
            self._failed = True
            warnings.warn(f"MLflowLogger could not {what}: {_describe(error)}. Training "
                          f"goes on; this run logs nothing more to {self.tracking_uri}.", RuntimeWarning, stacklevel=2)


def _check_seconds(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number of seconds. Received: {name}={value!r}")


def _answers(uri: str, timeout: float) -> None:
    """Raise unless an HTTP server answers at `uri` within `timeout` seconds (any HTTP status counts)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered, if only to refuse: MLflow's own calls will say more


def _now() -> int:
    return int(time.time() * 1000)


def _describe(error: BaseException) -> str:
    """`Type: first line` of the innermost cause (MLflow and SQLAlchemy wrap the telling error)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _version() -> str:
    try:
        return importlib.metadata.version("epochal")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
