"""The run fingerprint: what makes a training run the run it is, stored with every backup and
checkpoint, so that a resume can tell another run's files from its own.

Five parts, each of plain values (so a message can name exactly what differs):

- `module`: each `state_dict()` entry's name, shape and dtype — the architecture, not the weights;
- `optimizers`: per optimizer its class and, per param group, every setting but the parameters
  (learning rate, betas, weight decay, ...) and how many parameters the group holds;
- `compile`: the compile options (loss, metrics, loss weights, step options), described as text;
- `fit`: the `fit` arguments that shape the trajectory (`epochs`, `batch_size`, `shuffle`, ...);
- `data`: per data source (`train`, `validation`) its size, shapes, dtypes and a SHA-256 of its
  values, read in place (never copied whole); for a DataLoader its length, batch size, sampler and
  a hash of its dataset's first samples. The data part is computed on first use (the first backup
  or checkpoint, or a resume), so a `fit` that saves nothing never reads its data for it.

Which parts a resume compares, and what it forgives, is `epochal.training.resume_check`.
"""

from __future__ import annotations

import functools
import itertools
import random
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from epochal.files.digest import digest
from epochal.saving import class_name
from epochal.training.rng import capture_rng, restore_rng

#: Samples (map-style datasets) or batches (other re-iterables) whose values the data hash covers.
FIRST_SAMPLES = 8
FIRST_BATCHES = 2


class RunFingerprint:
    """A run's fingerprint; `value()` is its plain dict, the data part hashed on the first call."""

    def __init__(self, parts: dict[str, Any], data: Mapping[str, Any]) -> None:
        self._parts = parts
        self._data = data
        self._value: dict[str, Any] | None = None

    def value(self) -> dict[str, Any]:
        if self._value is None:
            self._value = {**self._parts, "data": {name: data_fingerprint(source) for name, source in self._data.items()}}
        return self._value


def run_fingerprint(module: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
                    compile_options: Mapping[str, Any], fit_arguments: Mapping[str, Any],
                    data: Mapping[str, Any]) -> RunFingerprint:
    """The fingerprint of a run about to start; everything but the data is read now.

    Args:
        module: The module being trained.
        optimizers: Its optimizer(s), by name (`Model.optimizers`).
        compile_options: The arguments `compile` was given (loss, metrics, step options...).
        fit_arguments: The `fit` arguments that shape the trajectory, as plain values.
        data: Each data source by name (`train`, `validation`): arrays adapters, DataLoaders,
            re-iterables or None; read in place when `value()` is first called.
    """
    return RunFingerprint({
        "module": module_fingerprint(module),
        "optimizers": {name: optimizer_fingerprint(optimizer) for name, optimizer in optimizers.items()},
        "compile": {key: describe(value) for key, value in compile_options.items()},
        "fit": {key: describe(value) for key, value in fit_arguments.items()},
    }, data)


def trajectory_arguments(params: Mapping[str, Any], validation_freq: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The `fit` arguments that shape the trajectory, from `History.params` and the (whole) data sources.

    `validation_every` and `max_steps` appear only when set, so a backup written without them (or by an
    epochal that had neither) still matches a run that does not use them.
    """
    train, validation = data.get("train"), data.get("validation")
    return {key: params[key] for key in ("epochs", "batch_size", "steps", "initial_epoch")} | {
        "shuffle": getattr(train, "shuffle", None),
        "validation_freq": validation_freq if isinstance(validation_freq, int) else list(validation_freq),
        "validation_batch_size": getattr(validation, "batch_size", None),
        "validation_steps": getattr(validation, "steps", None),
    } | {key: params[key] for key in ("validation_every", "max_steps") if params.get(key) is not None}


def module_fingerprint(module: torch.nn.Module) -> dict[str, list[Any]]:
    """`{name: [shape, dtype]}` for every entry of `module.state_dict()` (parameters and buffers)."""
    return {name: [list(tensor.shape), str(tensor.dtype).removeprefix("torch.")]
            for name, tensor in module.state_dict().items()}


def optimizer_fingerprint(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and each param group's settings (all but the parameters) and size."""
    return {"class": class_name(optimizer),
            "groups": [{**{key: describe(value) for key, value in group.items() if key != "params"},
                        "params": len(group["params"])} for group in optimizer.param_groups]}


def data_fingerprint(source: Any) -> dict[str, Any] | None:
    """Size, shapes, dtypes and a hash of one data source's values (see the module's docstring)."""
    if source is None:
        return None
    arrays = getattr(source, "arrays", source)  # a rank's shard: the whole arrays behind it
    if hasattr(arrays, "x") and hasattr(arrays, "num_samples"):
        parts = {"x": arrays.x, "y": arrays.y, "sample_weight": arrays.sample_weight}
        return {"kind": "arrays", "samples": arrays.num_samples,
                **{name: _arrays(part) for name, part in parts.items()}}
    dataset = source.dataset if hasattr(source, "epoch_batches") else source  # a stream's adapter: the user's object
    if isinstance(dataset, torch.utils.data.DataLoader):
        return _loader(dataset)
    if isinstance(dataset, Iterator):  # one pass only: reading it would lose those batches
        return {"kind": type(dataset).__name__}
    return {"kind": type(dataset).__name__, "length": _length(dataset),
            "first": _hash_values(_fixed_rng(itertools.islice(dataset, FIRST_BATCHES)))}


def describe(value: Any, depth: int = 0) -> Any:
    """`value` as plain values: numbers, strings, lists and dicts as they are; functions by their
    qualified name; tensors by shape, dtype and hash; other objects by class and plain attributes.

    Example:
        >>> describe({"loss": torch.nn.MSELoss(), "metrics": ["mae"], "scale": torch.ones(2)})
        {'loss': 'torch.nn.modules.loss.MSELoss(reduction=mean, state=44136fa355b3678a)', 'metrics': ['mae'], 'scale': 'tensor[2] float32 6f315286904aca92'}
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)} {str(value.dtype).removeprefix('torch.')} {digest(value)[:16]}"
    if isinstance(value, Mapping):
        return {str(key): describe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe(item, depth + 1) for item in value]
    if isinstance(value, functools.partial):
        return f"partial({describe(value.func, depth + 1)}, {describe(list(value.args), depth + 1)}, " \
               f"{describe(value.keywords, depth + 1)})"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    settings = [f"{key}={item}" for key, item in sorted(getattr(value, "__dict__", {}).items())
                if not key.startswith("_") and key != "training" and isinstance(item, (bool, int, float, str, type(None)))]
    if isinstance(value, torch.nn.Module):
        settings.append(f"state={digest(dict(value.state_dict()))[:16]}")
    return f"{class_name(value)}({', '.join(settings)})"


def _arrays(tree: Any) -> Any:
    """Shape, dtype and SHA-256 of each tensor in `tree` (None stays None)."""
    if tree is None:
        return None
    if isinstance(tree, Mapping):
        return {str(key): _arrays(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_arrays(value) for value in tree]
    return {"shape": list(tree.shape), "dtype": str(tree.dtype).removeprefix("torch."), "sha256": digest(tree)}


def _loader(loader: torch.utils.data.DataLoader) -> dict[str, Any]:
    """A DataLoader by its length, batch size, sampler and dataset (the dataset's first samples when
    it is map-style: the same whatever the shuffling, sharding or workers)."""
    dataset = loader.dataset
    record = {"kind": "DataLoader", "length": _length(loader), "batch_size": loader.batch_size,
              "drop_last": loader.drop_last, "sampler": type(loader.sampler).__name__,
              "dataset": type(dataset).__name__, "samples": _length(dataset)}
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__getitem__"):
        own = loader.generator.get_state() if loader.generator is not None else None  # iterating draws from it
        record["first"] = _hash_values(_fixed_rng(itertools.islice(loader, FIRST_BATCHES)))
        if own is not None:
            loader.generator.set_state(own)
    else:
        count = min(FIRST_SAMPLES, _length(dataset) or 0)
        record["first"] = _hash_values(_fixed_rng(dataset[index] for index in range(count)))
    return record


def _fixed_rng(items: Iterable[Any]) -> list[Any]:
    """`items` drawn with every global generator seeded with 0, and the run's generators left as they were.

    Random augmentation, a shuffling sampler or worker seeds then give the same values whenever the
    fingerprint is taken, and the run draws exactly what it would have drawn without it.
    """
    saved = capture_rng()
    try:
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        return list(items)
    finally:
        restore_rng(saved)


def _hash_values(values: list[Any]) -> str:
    """SHA-256 of samples or batches: tensors and arrays by value, containers recursively."""
    return digest(_plain(values))


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) or hasattr(value, "__array__") or hasattr(value, "__array_interface__"):
        array = np.asarray(value)
        return torch.from_numpy(np.ascontiguousarray(array)) if array.dtype.kind in "biufc" else str(array.tolist())
    return type(value).__name__  # an object of unknown make: its repr may hold a memory address


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None
