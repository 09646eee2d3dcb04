"""Streaming data: DataLoaders, re-iterables and one-shot iterators/generators of batches."""

from __future__ import annotations

import collections.abc
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from epochal.data.batch import Batch
from epochal.data.checks import TargetCheck, check_batch, per_sample_weights
from epochal.data.class_weights import class_sample_weights
from epochal.data.structure import flatten, map_structure, to_tensors


class DatasetAdapter:
    """Each element is `(x, y)` or `(x, y, sample_weight)`, already batched.

    Without `steps`, every epoch makes a fresh iterator and ends when it is exhausted. With `steps`,
    one iterator serves the whole run and each epoch takes `steps` batches; when it runs dry the
    adapter sets `ran_dry` and the loop stops training (TF.js `fitDataset` semantics).

    Each batch is checked on the host before it moves to the device (`epochal.data.checks`):
    finite values unless `check_finite` is off, sample weights, and the targets once
    `check_targets` is set (after the first batch has shown what the loss reads).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        steps: int | None,
        device: torch.device,
        float_dtype: torch.dtype,
        name: str = "dataset",
        targets: bool = True,
        persistent: bool | None = None,
        class_weight: Mapping[int, float] | None = None,
    ) -> None:
        self.dataset = dataset
        self.device = device
        self.float_dtype = float_dtype
        self.name = name
        self.targets = targets
        self.class_weight = class_weight
        self._limit = steps
        self._persistent = steps is not None if persistent is None else persistent
        self._iterator: Iterator[Any] | None = None
        self.ran_dry = False
        self.steps = steps if steps is not None else _length(dataset)
        self._non_blocking = device.type == "cuda"
        self.check_finite = True
        self.check_targets: TargetCheck | None = None

    def example(self) -> Batch | None:
        """The first element of a fresh iterator (random generators restored after it), or None for a
        one-shot iterator, which cannot be read ahead without losing that batch."""
        if self._persistent or isinstance(self.dataset, collections.abc.Iterator):
            return None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            element = next(iter(self.dataset), None)
        return None if element is None else self._convert(element, 0)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch, converted to tensors on the device."""
        set_epoch = getattr(getattr(self.dataset, "sampler", None), "set_epoch", None)
        if set_epoch is not None:  # DistributedSampler: a fresh shuffle per epoch, the same on every rank
            set_epoch(epoch)
        if self._persistent:
            if self._iterator is None:
                self._iterator = iter(self.dataset)
            iterator = self._iterator
        else:
            iterator = iter(self.dataset)
        return self._take(iterator)

    def _take(self, iterator: Iterator[Any]) -> Iterator[Batch]:
        taken = 0
        while self._limit is None or taken < self._limit:
            try:
                element = next(iterator)
            except StopIteration:
                if self._persistent and self._limit is not None:
                    self.ran_dry = True
                elif self._limit is not None:
                    warn_short_pass(self.name, self._limit, taken)
                return
            yield self._convert(element, taken)
            taken += 1

    def _convert(self, element: Any, index: int) -> Batch:
        if not self.targets:  # predict: an element is x, or a tuple whose first entry is x
            x = element[0] if isinstance(element, (tuple, list)) and len(element) in (2, 3) else element
            return Batch(self._placed(self._tensors(x, "x")))
        if not isinstance(element, (tuple, list)) or len(element) not in (2, 3):
            kind = f"a {type(element).__name__}" + (f" of length {len(element)}" if isinstance(element, (tuple, list)) else "")
            raise ValueError(
                f"Each element of `{self.name}` must be a tuple (x, y) or (x, y, sample_weight). Received: {kind}"
            )
        x, y = self._tensors(element[0], "x"), self._tensors(element[1], "y")
        where = f"batch {index} of `{self.name}`: "
        sample_weight = None
        if len(element) == 3:
            weights = self._tensors(element[2], "sample_weight").float()
            sample_weight = per_sample_weights(weights, weights.shape[0], "sample_weight", where)
        # On the host, before the copy to the device; a batch already on the device is not checked,
        # since reading its values would wait for the device.
        if all(t.device.type == "cpu" for t in flatten((x, y, sample_weight)) if t is not None):
            check_batch(x, y, sample_weight, where, check_finite=self.check_finite, check_targets=self.check_targets)
        if self.class_weight is not None:
            weights = class_sample_weights(y, self.class_weight)
            sample_weight = weights if sample_weight is None else sample_weight * weights
        return Batch(*self._placed((x, y, sample_weight)))

    def _tensors(self, value: Any, part: str) -> Any:
        return to_tensors(value, f"{self.name} element's {part}", self.float_dtype)

    def _placed(self, tensors: Any) -> Any:
        if self._non_blocking:  # CUDA: a copy from pinned memory overlaps with the running step
            tensors = map_structure(lambda t: None if t is None else _pinned(t), tensors)
        return map_structure(lambda t: None if t is None else t.to(self.device, non_blocking=self._non_blocking),
                             tensors)


def _pinned(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in page-locked memory (a DataLoader with pin_memory=True already gives that)."""
    return tensor.pin_memory() if tensor.device.type == "cpu" and not tensor.is_pinned() else tensor


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


def is_dataset(value: Any) -> bool:
    """Whether `value` is streaming data rather than in-memory arrays."""
    if isinstance(value, (torch.Tensor, str, bytes, collections.abc.Mapping, tuple)):
        return False
    if type(value).__module__.startswith(("numpy", "pandas")):
        return False
    if isinstance(value, torch.utils.data.DataLoader) or isinstance(value, collections.abc.Iterator):
        return True
    if isinstance(value, list):  # a list of (x, y[, w]) batches, not a list of numbers or of input arrays
        first = value[0] if value else None
        return isinstance(first, (tuple, list)) and len(first) in (2, 3) and _holds_arrays(first[0])
    return isinstance(value, collections.abc.Iterable)


def _holds_arrays(x: Any) -> bool:
    """Whether a batch's `x` is an array or a tuple/dict of them (not a number or a row of numbers)."""
    if isinstance(x, Mapping):
        return True
    if isinstance(x, (tuple, list)):
        return bool(x) and _holds_arrays(x[0])
    return isinstance(x, (torch.Tensor, np.ndarray)) or type(x).__module__.startswith("pandas")


def warn_ran_dry(name: str, steps: int | None) -> None:
    warnings.warn(
        f"`{name}` ran out of data"
        + (f" before the requested {steps} batches per epoch" if steps else "")
        + "; training stops. Pass a re-iterable dataset, or fewer `batches_per_epoch` x `epochs`.",
        stacklevel=4,
    )


def warn_short_pass(name: str, steps: int, ran: int) -> None:
    """A pass asked for `steps` batches and the data held only `ran` (Keras and TF.js warn too)."""
    warnings.warn(
        f"`{name}` ran out of data after {ran} batch(es), before the {steps} asked for by `steps`; the results "
        f"are over those {ran} batch(es).",
        stacklevel=5,
    )


def warn_empty_validation(epoch: int, source: str = "validation_data") -> None:
    warnings.warn(
        f"`{source}` yielded no batch at epoch {epoch}, so that epoch has no `val_` logs from it. A generator "
        "or iterator is used up by its first pass: pass a re-iterable (a list, a DataLoader) or arrays.",
        stacklevel=4,
    )
