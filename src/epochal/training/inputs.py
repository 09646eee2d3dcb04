"""The data a fit, evaluate or predict reads in this process: adapters for arrays or streams, checked
whole before any training (`epochal.data.checks`), and under torch.distributed this rank's share of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from epochal.data import Adapter, is_dataset, make_dataset_fit_data, make_eval_data, make_fit_data
from epochal.data.checks import check_data
from epochal.data.validation_sets import source_name, split_sets
from epochal.parallel.cluster import Cluster


@dataclass(frozen=True)
class FitData:
    """What a fit trains and validates on in this process, and the whole data (for the run fingerprint)."""

    train: Adapter
    validations: dict[str | None, Adapter]  # each validation set by name (None: the one set of a tuple or stream)
    samples: int | None  # training samples in memory (None for a stream)
    whole: dict[str, Any]  # `train` and each validation set before sharding: arrays adapters or the streams given


class Inputs:
    """Builds the adapters of one Model: on its device, in its float dtype, sharded over its cluster."""

    def __init__(self, device: torch.device, float_dtype: torch.dtype, cluster: Cluster | None) -> None:
        self.device, self.float_dtype, self.cluster = device, float_dtype, cluster

    def fit_arrays(self, x: Any, y: Any, *, sample_weight: Any, class_weight: Mapping[int, float] | None,
                   batch_size: int, shuffle: bool, validation_split: float, validation_data: Any,
                   validation_batch_size: int, steps_per_epoch: int | None, validation_steps: int | None,
                   gather_batches: int, check_finite: bool = True) -> FitData:
        """Training and validation adapters for `fit` on arrays (checked whole), and the number of training samples."""
        train, validations, samples = make_fit_data(
            x, y, sample_weight=sample_weight, class_weight=class_weight, batch_size=batch_size, shuffle=shuffle,
            validation_split=validation_split, validation_data=self._local_validation_data(validation_data),
            validation_batch_size=validation_batch_size, steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps, device=self.device, float_dtype=self.float_dtype,
            gather_batches=gather_batches,
        )
        split = "the validation_split part of " if validation_data is None else None
        check_data([(train, "")] + [(validation, split or f"{source_name(name)}: ")
                                    for name, validation in validations.items()], check_finite=check_finite)
        given = split_sets(validation_data)
        whole = {"train": train} | {_whole_key(name): given[name] if is_dataset(given.get(name)) else validation
                                    for name, validation in validations.items()}
        return FitData(self._local_arrays(train, train=True), self._local_validations(validations), samples, whole)

    def fit_stream(self, dataset: Any, *, batches_per_epoch: int | None, validation_data: Any,
                   validation_batches: int | None, validation_batch_size: int,
                   class_weight: Mapping[int, float] | None, check_finite: bool = True) -> FitData:
        """Training and validation adapters for streaming data (`fit_dataset`, `fit(x=dataset)`); each streamed
        batch is checked on the host as it is read."""
        train, validations = make_dataset_fit_data(
            self._local_dataset(dataset, train=True), batches_per_epoch=batches_per_epoch,
            validation_data=self._local_validation_data(validation_data), validation_batches=validation_batches,
            validation_batch_size=validation_batch_size, class_weight=class_weight, device=self.device,
            float_dtype=self.float_dtype,
        )
        check_data([(train, "")] + [(validation, f"{source_name(name)}: ") for name, validation in validations.items()],
                   check_finite=check_finite)
        whole = {"train": dataset} | {_whole_key(name): data for name, data in split_sets(validation_data).items()}
        return FitData(train, self._local_validations(validations), None, whole)

    def evaluation(self, x: Any, y: Any, sample_weight: Any, *, batch_size: int, steps: int | None,
                   targets: bool) -> tuple[Adapter, bool]:
        """The adapter for `evaluate`/`predict`, and whether it reads only this rank's part of `x`."""
        sharded = False
        if self.cluster is not None and is_dataset(x):
            x, sharded = self.cluster.shard_dataset(x, train=False)
        adapter = make_eval_data(x, y, sample_weight=sample_weight, batch_size=batch_size, steps=steps,
                                 device=self.device, float_dtype=self.float_dtype, targets=targets)
        check_data([(adapter, "")], check_finite=False)  # NaN in, NaN out: evaluating or predicting it is no error
        if self.cluster is not None and not is_dataset(x):
            adapter, sharded = self.cluster.shard_arrays(adapter, train=False)
        return self._in_step(adapter), sharded

    def _in_step(self, adapter: Any) -> Any:
        """An evaluation adapter whose ranks run equally many batches where the strategy needs it (FSDP)."""
        return adapter if self.cluster is None or adapter is None else self.cluster.evaluation(adapter)

    def _local_arrays(self, adapter: Any, *, train: bool) -> Any:
        """This rank's part of in-memory data under torch.distributed; `adapter` itself otherwise."""
        return adapter if self.cluster is None else self.cluster.shard_arrays(adapter, train=train)[0]

    def _local_validations(self, validations: dict[str | None, Adapter]) -> dict[str | None, Adapter]:
        return {name: self._in_step(self._local_arrays(validation, train=False)) for name, validation in validations.items()}

    def _local_validation_data(self, validation_data: Any) -> Any:
        """`validation_data` with each DataLoader in it (one, or a dict of named sets) reading this rank's part."""
        if isinstance(validation_data, Mapping):
            return {name: self._local_dataset(data, train=False) for name, data in validation_data.items()}
        return self._local_dataset(validation_data, train=False)

    def _local_dataset(self, data: Any, *, train: bool) -> Any:
        """A DataLoader rebuilt to read this rank's part under torch.distributed; `data` otherwise."""
        if self.cluster is None or data is None or not is_dataset(data):
            return data
        return self.cluster.shard_dataset(data, train=train)[0]


def _whole_key(name: str | None) -> str:
    """A validation set's name in the run fingerprint: `validation`, or `validation['clean']` for a named set."""
    return "validation" if name is None else f"validation[{name!r}]"
