"""A run's settings: defaults, then a TOML file (`--config`), then command-line flags, in that order."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import tomllib

from epochal.cli.errors import CliError


@dataclass
class TrainConfig:
    """Every choice of an `epochal train` run; the same names serve as TOML keys (with `_` or `-`)."""

    data: str = "digits"
    target: str | None = None
    task: str = "auto"
    test_split: float = 0.2
    model: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1
    epochs: int = 50
    batch_size: int = 32
    validation_split: float = 0.2
    optimizer: str = "adam"
    lr: float | None = None
    loss: str | None = None
    metrics: list[str] | None = None
    patience: int = 5
    seed: int = 0
    threads: int | None = None
    out: str = "runs"
    name: str | None = None
    mlflow: str | None = None
    rollback: bool = False
    keep_backups: int | str = "all"
    backup_freq: int | None = None
    validation_every: int | None = None
    max_steps: int | None = None
    max_time: float | None = None  # seconds; a run out of time pauses, and `--resume` continues it
    fork_of: str | None = None  # the backup a fork starts from (`epochal fork`); own backups come first


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML file (keys may use `-` or `_`); unknown keys are an error listing the known ones."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise CliError(f"{os.fspath(path)} is not valid TOML: {error}") from None
    settings = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise CliError(f"Unknown key(s) {', '.join(unknown)} in {os.fspath(path)}. Known keys: {', '.join(FIELDS)}.")
    return settings


def resolve(*layers: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from the defaults updated by each layer in turn (later layers win; None is unset)."""
    settings: dict[str, Any] = {}
    for layer in layers:
        settings.update({key: value for key, value in layer.items() if value is not None})
    for key in ("hidden", "metrics"):
        if isinstance(settings.get(key), str):
            settings[key] = [item.strip() for item in settings[key].split(",") if item.strip()]
    if "hidden" in settings:
        settings["hidden"] = [_as_int("hidden", h) for h in settings["hidden"]]
    if isinstance(settings.get("keep_backups"), str) and settings["keep_backups"].strip().isdigit():
        settings["keep_backups"] = int(settings["keep_backups"])
    return TrainConfig(**settings)


def to_toml(config: TrainConfig) -> str:
    """The resolved settings as TOML that `--config` reads back (unset values are left out)."""
    lines = []
    for key, value in dataclasses.asdict(config).items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _as_int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CliError(f"`{name}` takes whole numbers such as 128,64. Received: {value!r}") from None
