"""A step's log values: names and one stacked tensor, so the loop sums them on the device without a sync.

`train_step` and `test_step` return a mapping name -> scalar tensor. The default steps return a
`StepValues` (already stacked); a user's step may return any mapping, which `stack_values` turns into
one, checking it once per pass: a mapping of scalars, with the same names every batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch


class StepValues(Mapping[str, torch.Tensor]):
    """Read-only `name -> scalar tensor`, stored as `names` and one `tensor` of their values.

    `tensor` is 1-D, one entry per name, or 2-D with one row per batch when several batches ran in
    one call (`steps_per_execution`).

    Example:
        >>> values = StepValues(("loss", "accuracy"), torch.tensor([0.5, 0.75]))
        >>> dict(values.items()) == {"loss": torch.tensor(0.5), "accuracy": torch.tensor(0.75)}
        True
    """

    __slots__ = ("names", "tensor")

    def __init__(self, names: tuple[str, ...], tensor: torch.Tensor) -> None:
        self.names, self.tensor = names, tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensor[..., self.names.index(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, key: object) -> bool:
        return key in self.names

    def __repr__(self) -> str:
        return f"StepValues({dict(zip(self.names, self.tensor.tolist()))!r})"

    @classmethod
    def rows(cls, results: list[StepValues]) -> StepValues:
        """Several batches' values as one, a row per batch (they have the same keys)."""
        return cls(results[0].names, torch.stack([result.tensor for result in results]))


def stack_values(result: Any, step: str, expected: tuple[str, ...] | None) -> StepValues:
    """`result` of `step` as StepValues; a clear error for anything but a mapping of scalars.

    `expected` are the names of the pass's first batch (None for the first): later batches must
    return the same names, since epoch logs are means per name.
    """
    if isinstance(result, StepValues):
        values = result
    else:
        if not isinstance(result, Mapping):
            raise TypeError(f"`{step}` must return a mapping of log names to scalar tensors, e.g. "
                            f'{{"loss": loss}}. Received: {_describe(result)}')
        values = StepValues(tuple(str(key) for key in result), _stacked(result, step))
    if expected is not None and values.names != expected:
        raise ValueError(f"`{step}` must return the same log names for every batch. Received: "
                         f"{list(values.names)} after {list(expected)}")
    return values


def _stacked(result: Mapping[Any, Any], step: str) -> torch.Tensor:
    scalars: list[torch.Tensor | float] = []
    for key, value in result.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"`{step}` must return scalar values: {key!r} has shape {tuple(value.shape)}. "
                                 "Reduce it (e.g. `.mean()`) before returning it.")
            scalars.append(value.detach().reshape(()).float())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars.append(float(value))
        else:
            raise TypeError(f"`{step}` must return scalar tensors or numbers: {key!r} is {_describe(value)}")
    if not scalars:
        raise ValueError(f"`{step}` returned an empty mapping: return at least one log value, e.g. {{\"loss\": loss}}.")
    device = next((s.device for s in scalars if isinstance(s, torch.Tensor)), None)
    return torch.stack([s if isinstance(s, torch.Tensor) else torch.tensor(s, device=device) for s in scalars])


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}" if value is not None else "None"
