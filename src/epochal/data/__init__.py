"""Data adapters: one per input kind, chosen by `make_fit_data` / `make_eval_data`.

Every adapter offers `epoch_batches(epoch) -> Iterator[Batch]`, `steps` (batches per epoch, or
`None` when unknown), `ran_dry` (a one-shot stream that ended before its epoch did) and `example()`
(a batch to compile on before training, or None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from epochal.data.arrays import ArrayAdapter
from epochal.data.batch import Batch
from epochal.data.checks import per_sample_weights
from epochal.data.class_weights import class_sample_weights
from epochal.data.datasets import DatasetAdapter, is_dataset, warn_empty_validation, warn_ran_dry, warn_short_pass
from epochal.data.structure import Tree, flatten, num_samples, slice_rows, to_device, to_tensors
from epochal.data.validation_sets import source_name, split_sets

__all__ = ["Adapter", "ArrayAdapter", "Batch", "DatasetAdapter", "is_dataset", "make_eval_data",
           "make_fit_data", "make_dataset_fit_data", "make_validations", "warn_empty_validation", "warn_ran_dry"]


class Adapter(Protocol):
    """What the loop needs from any input kind."""

    @property
    def steps(self) -> int | None: ...

    @property
    def ran_dry(self) -> bool: ...

    def epoch_batches(self, epoch: int) -> Any: ...

    def example(self) -> Batch | None:
        """A batch shaped as the training batches, read without drawing from the random generators
        (None when it cannot be read ahead)."""


class InMemory:
    """Arrays converted to tensors on the device, with their sample count."""

    def __init__(self, x: Any, y: Any, sample_weight: Any, *, device: torch.device, float_dtype: torch.dtype,
                 prefix: str = "") -> None:
        if x is None:
            raise ValueError(f"`{prefix}x` is required.")
        self.x = to_device(to_tensors(x, f"{prefix}x", float_dtype), device)
        self.y = None if y is None else to_device(to_tensors(y, f"{prefix}y", float_dtype), device)
        if isinstance(sample_weight, (Mapping, tuple, str, bytes)):
            raise TypeError(f"`{prefix}sample_weight` must be one array of per-sample weights. "
                            f"Received: a {type(sample_weight).__name__}")
        self.sample_weight = None if sample_weight is None else to_device(
            to_tensors(sample_weight, f"{prefix}sample_weight", torch.float32), device).float()
        self.size = num_samples(self.x, f"{prefix}x")
        if self.size == 0:
            raise ValueError(f"`{prefix}x` is empty: it holds 0 samples. Pass at least one sample.")
        for name, part in ((f"{prefix}y", self.y), (f"{prefix}sample_weight", self.sample_weight)):
            if part is not None and num_samples(part, name) != self.size:
                raise ValueError(
                    f"`{prefix}x` and `{name}` must have the same number of samples. "
                    f"Received: {prefix}x has {self.size} samples, {name} has {num_samples(part, name)}"
                )
        if self.sample_weight is not None:
            self.sample_weight = per_sample_weights(self.sample_weight, self.size, f"{prefix}sample_weight")

    def split(self, fraction: float) -> tuple[InMemory, InMemory]:
        """The first `floor(N * (1 - fraction))` samples and the rest, in order (validation_split)."""
        cut = math.floor(self.size * (1.0 - fraction))
        if cut == 0 or cut == self.size:
            raise ValueError(
                f"`validation_split={fraction}` leaves {cut} training and {self.size - cut} validation samples "
                f"out of {self.size}; both must be at least 1."
            )
        return self._rows(0, cut), self._rows(cut, self.size)

    def _rows(self, start: int, stop: int) -> InMemory:
        part = object.__new__(InMemory)
        part.x = slice_rows(self.x, start, stop)
        part.y = None if self.y is None else slice_rows(self.y, start, stop)
        part.sample_weight = None if self.sample_weight is None else self.sample_weight[start:stop]
        part.size = stop - start
        return part

    def with_class_weight(self, class_weight: Mapping[int, float] | None) -> InMemory:
        if class_weight is None:
            return self
        if self.y is None or len(flatten(self.y)) != 1:
            raise ValueError("`class_weight` is only supported for a single output with targets `y`.")
        weights = class_sample_weights(flatten(self.y)[0], class_weight)
        self.sample_weight = weights if self.sample_weight is None else self.sample_weight * weights
        return self

    def adapter(self, batch_size: int, *, shuffle: bool = False, steps: int | None = None,
                steps_name: str = "steps", gather_batches: int = 1, carry_over: bool = False) -> ArrayAdapter:
        available = math.ceil(self.size / batch_size)
        if steps is not None and steps > available:
            raise ValueError(
                f"`{steps_name}` asks for {steps} batches per epoch but the arrays hold only {available} batches of "
                f"{batch_size} ({self.size} samples). Received: {steps_name}={steps}. Pass {steps_name} <= "
                f"{available}, or a dataset."
            )
        return ArrayAdapter(self.x, self.y, self.sample_weight, num_samples=self.size,
                            batch_size=batch_size, shuffle=shuffle, steps=steps, gather_batches=gather_batches,
                            carry_over=carry_over)


def make_fit_data(
    x: Any, y: Any, *, sample_weight: Any, class_weight: Mapping[int, float] | None, batch_size: int,
    shuffle: bool, validation_split: float, validation_data: Any, validation_batch_size: int,
    steps_per_epoch: int | None, validation_steps: int | None, device: torch.device, float_dtype: torch.dtype,
    gather_batches: int = 1,
) -> tuple[Adapter, dict[str | None, Adapter], int | None]:
    """Training and validation adapters for `fit` on arrays (each validation set's by name, see
    `validation_sets`), plus the number of training samples.

    `gather_batches` training batches are gathered together (see `ArrayAdapter`): the steps per execution.
    """
    data = InMemory(x, y, sample_weight, device=device, float_dtype=float_dtype)
    validations = make_validations(validation_data, batch_size=validation_batch_size, steps=validation_steps,
                                   device=device, float_dtype=float_dtype)
    for name, validation in validations.items():
        if isinstance(validation, ArrayAdapter):
            _check_like_training(validation, data, source_name(name))
    if validation_data is None and validation_split:
        data, held_out = data.split(validation_split)  # the held-out rows keep their sample weights (Keras)
        validations = {None: held_out.adapter(validation_batch_size, steps=validation_steps,
                                              steps_name="validation_steps")}
    data = data.with_class_weight(class_weight)
    train = data.adapter(batch_size, shuffle=shuffle, steps=steps_per_epoch, steps_name="steps_per_epoch",
                         gather_batches=gather_batches, carry_over=True)
    return train, validations, data.size


def _check_like_training(validation: ArrayAdapter, train: InMemory, source: str) -> None:
    """Validation arrays must hold samples shaped as the training ones: checked now, not after an epoch."""
    for part, theirs, ours in (("x", validation.x, train.x), ("y", validation.y, train.y)):
        if ours is None or theirs is None:
            continue
        got, expected = [t.shape[1:] for t in flatten(theirs)], [t.shape[1:] for t in flatten(ours)]
        like = (lambda shapes: [_squeezed(s) for s in shapes]) if part == "y" else list  # `(N,)` reads as `(N, 1)`
        if like(got) != like(expected):
            shown = ", ".join(str(tuple(s)) for s in got)
            wanted = ", ".join(str(tuple(s)) for s in expected)
            raise ValueError(f"`{source}`'s {part} has samples of shape {shown}, but the training `{part}` has "
                             f"{wanted}: they must match.")


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    return tuple(shape[:-1]) if shape[-1:] == (1,) else tuple(shape)


def make_dataset_fit_data(
    dataset: Any, *, batches_per_epoch: int | None, validation_data: Any, validation_batches: int | None,
    validation_batch_size: int, class_weight: Mapping[int, float] | None, device: torch.device,
    float_dtype: torch.dtype,
) -> tuple[Adapter, dict[str | None, Adapter]]:
    """Training and validation adapters for streaming data (`fit_dataset`, `fit(x=dataset)`)."""
    train = DatasetAdapter(dataset, steps=batches_per_epoch, device=device, float_dtype=float_dtype,
                           class_weight=class_weight)
    return train, make_validations(validation_data, batch_size=validation_batch_size, steps=validation_batches,
                                   device=device, float_dtype=float_dtype)


def make_validations(validation_data: Any, *, batch_size: int, steps: int | None, device: torch.device,
                     float_dtype: torch.dtype) -> dict[str | None, Adapter]:
    """Each validation set's adapter by name (`None` for the one set of a tuple or dataset; see `validation_sets`)."""
    return {name: make_validation(data, batch_size=batch_size, steps=steps, device=device, float_dtype=float_dtype,
                                  name=source_name(name))
            for name, data in split_sets(validation_data).items()}


def make_validation(validation_data: Any, *, batch_size: int, steps: int | None, device: torch.device,
                    float_dtype: torch.dtype, name: str = "validation_data") -> Adapter:
    """`validation_data` as `(x, y)`, `(x, y, sample_weight)` or a dataset (fresh iterator each time);
    `name` is how messages call it."""
    if is_dataset(validation_data):
        return DatasetAdapter(validation_data, steps=steps, device=device, float_dtype=float_dtype,
                              name=name, persistent=False)
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        length = f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else ""
        named = (", or a dict of them by name" if name == "validation_data"
                 else ": a dict as `validation_data` names several validation sets")
        raise ValueError(
            f"`{name}` must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight_val), or a dataset{named}. "
            f"Received: a {type(validation_data).__name__}{length}"
        )
    parts = list(validation_data) + [None] * (3 - len(validation_data))
    data = InMemory(*parts, device=device, float_dtype=float_dtype, prefix=f"{name}: ")
    if data.y is None:
        raise ValueError(f"`{name}` must include targets: (x_val, y_val). Received: y_val=None")
    return data.adapter(batch_size, steps=steps)


def make_eval_data(
    x: Any, y: Any, *, sample_weight: Any, batch_size: int, steps: int | None, device: torch.device,
    float_dtype: torch.dtype, targets: bool = True,
) -> Adapter:
    """One adapter for `evaluate` (targets) or `predict` (inputs only), on arrays or a dataset."""
    if is_dataset(x):
        return DatasetAdapter(x, steps=steps, device=device, float_dtype=float_dtype, targets=targets,
                              name="x", persistent=False)
    data = InMemory(x, y if targets else None, sample_weight, device=device, float_dtype=float_dtype)
    available = math.ceil(data.size / batch_size)
    if steps is not None and steps > available:
        warn_short_pass("x", steps, available)
        steps = None
    return data.adapter(batch_size, steps=steps)
