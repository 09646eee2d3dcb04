"""Learning curves saved as CSV or JSON and read back, written atomically so a crash never leaves half a file."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from epochal.analysis.curves import Curves
from epochal.saving import atomic_write


def write_csv(history: Curves, path: str | os.PathLike[str]) -> None:
    """One row per epoch (`epoch` first, as Keras's CSVLogger); an empty cell where a key was not logged."""
    keys = list(history.history)
    columns = {key: dict(zip(history.epochs_of(key), history.history[key])) for key in keys}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch in history.epoch:
        writer.writerow([epoch, *(_cell(columns[key].get(epoch)) for key in keys)])
    with atomic_write(path, text=True) as handle:
        handle.write(buffer.getvalue())


def write_json(history: Curves, path: str | os.PathLike[str]) -> None:
    """`{"epoch", "history", "params", "compile_config", "key_epochs", "epoch_seconds", "events",
    "validation_steps", "validation_history"}`; `key_epochs` only lists keys logged on fewer epochs,
    `compile_config` appears when the model's was recorded, `epoch_seconds` when the epochs were timed,
    `events` when there were any, the validations by step when some were recorded
    (`fit(validation_every=N)` adds mid-epoch ones)."""
    sparse = {k: history.epochs_of(k) for k in history.history if len(history.history[k]) != len(history.epoch)}
    record: dict[str, Any] = {"epoch": list(history.epoch), "history": history.history, "params": history.params}
    compiled = getattr(history, "compile_config", {})
    if compiled:
        record["compile_config"] = compiled
    if sparse:
        record["key_epochs"] = sparse
    if history.epoch_seconds:
        record["epoch_seconds"] = history.epoch_seconds
    events = getattr(history, "events", [])
    if events:
        record["events"] = events
    validation_steps = getattr(history, "validation_steps", [])
    if validation_steps:
        record["validation_steps"] = validation_steps
        record["validation_history"] = getattr(history, "validation_history", {})
    with atomic_write(path, text=True) as handle:
        json.dump(record, handle, indent=1, default=str)


class Record(NamedTuple):
    """What a history file holds; a CSV file holds only the per-epoch values."""

    epoch: list[int]
    history: dict[str, list[float]]
    key_epochs: dict[str, list[int]]
    params: dict[str, Any]
    compile_config: dict[str, Any]
    epoch_seconds: list[float]
    events: list[dict[str, Any]]
    validation_steps: list[int]
    validation_history: dict[str, list[float]]


def read(path: str | os.PathLike[str]) -> Record:
    """The Record of a file `write_csv` or `write_json` made.

    A JSON file holding just a Keras-style `{"loss": [...], ...}` dict (what `json.dump(h.history)`
    writes) also loads; its epochs are numbered from 0.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"A history file must end in .csv or .json. Received: {str(path)!r}")
    try:
        return _read_csv(path) if suffix == ".csv" else _read_json(path)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:  # a damaged or foreign file
        if str(path) in str(error):
            raise
        raise ValueError(f"{str(path)!r} is not a readable history file ({type(error).__name__}: {error}); expected a "
                         "file written by `History.to_csv`/`to_json` (or a Keras `history.history` dict).") from None


def _read_csv(path: Path) -> Record:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0][:1] != ["epoch"]:
        raise ValueError(f"{str(path)!r} is not a history CSV: its first column must be `epoch`.")
    keys = rows[0][1:]
    epochs: list[int] = []
    history: dict[str, list[float]] = {key: [] for key in keys}
    key_epochs: dict[str, list[int]] = {key: [] for key in keys}
    for row in rows[1:]:
        epoch = int(row[0])
        epochs.append(epoch)
        for key, cell in zip(keys, row[1:]):
            if cell != "":
                history[key].append(float(cell))
                key_epochs[key].append(epoch)
    return Record(epochs, history, key_epochs, {}, {}, [], [], [], {})


def _read_json(path: Path) -> Record:
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{str(path)!r} is not a history JSON: expected an object at the top level.")
    if "history" not in record:  # a bare Keras `history.history` dump
        record = {"history": record}
    history = {key: [float(v) for v in values] for key, values in record["history"].items()}
    epochs = [int(e) for e in record.get("epoch", range(max(map(len, history.values()), default=0)))]
    key_epochs = {key: [int(e) for e in values] for key, values in record.get("key_epochs", {}).items()}
    seconds = [float(s) for s in record.get("epoch_seconds", [])]
    events = [dict(event) for event in record.get("events", [])]
    steps = [int(s) for s in record.get("validation_steps", [])]
    by_step = {key: [float(v) for v in values] for key, values in record.get("validation_history", {}).items()}
    return Record(epochs, history, key_epochs, dict(record.get("params", {})), dict(record.get("compile_config", {})),
                  seconds, events, steps, by_step)


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)  # repr round-trips floats exactly, nan and inf included
