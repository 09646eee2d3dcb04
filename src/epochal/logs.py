"""Read-only logs handed to callbacks: tensors stay on the device until a callback reads a value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch


class Logs(Mapping[str, float]):
    """A read-only mapping of log names to Python floats, converted on first read.

    The loop builds one per event from device tensors; nothing is synchronised with the device
    unless a callback actually reads a value, and then all values are fetched in one transfer.
    """

    __slots__ = ("_names", "_values", "_floats")

    def __init__(self, names: tuple[str, ...] = (), values: torch.Tensor | list[float] | None = None):
        self._names = names
        self._values = values
        self._floats: dict[str, float] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> Logs:
        logs = cls(tuple(values), None)
        logs._floats = dict(values)
        return logs

    def _resolved(self) -> dict[str, float]:
        if self._floats is None:
            values = self._values
            if isinstance(values, torch.Tensor):
                values = values.detach().cpu().tolist()
            self._floats = dict(zip(self._names, [float(v) for v in (values or [])]))
        return self._floats

    def peek(self, key: str) -> torch.Tensor | float | None:
        """`key`'s value without copying it to the host: a 0-d tensor while the logs hold the device's
        values, else the float; None when absent. Reading it later costs one sync for many batches."""
        if key not in self._names:
            return None
        if self._floats is None and isinstance(self._values, torch.Tensor):
            return self._values[self._names.index(key)]
        return self[key]

    def __getitem__(self, key: str) -> float:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def copy(self) -> dict[str, float]:
        """A plain, mutable dict of the values."""
        return dict(self._resolved())

    def __repr__(self) -> str:
        return f"Logs({self._resolved()!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]


def read_values(logs: Sequence[Mapping[str, float]], key: str) -> list[float]:
    """`key`'s value in each of `logs` (several batches' logs), read from the device in one transfer.

    Example:
        >>> read_values([Logs(("loss",), torch.tensor([0.5])), {"loss": 2.0}], "loss")
        [0.5, 2.0]
    """
    values = [logs_.peek(key) if isinstance(logs_, Logs) else logs_[key] for logs_ in logs]
    on_device = [value for value in values if isinstance(value, torch.Tensor)]
    read = iter(torch.stack(on_device).float().tolist() if on_device else [])
    return [next(read) if isinstance(value, torch.Tensor) else float(value) for value in values]  # type: ignore[arg-type]
