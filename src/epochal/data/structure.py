"""Nested inputs and outputs: a tensor, a tuple/list of them, or a dict of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

Tree = Any  # a torch.Tensor, or a tuple/list/dict of Trees


def map_structure(fn: Callable[[torch.Tensor], Any], tree: Tree) -> Tree:
    """Apply `fn` to every tensor leaf, keeping tuples, lists and dicts."""
    if isinstance(tree, Mapping):
        return {key: map_structure(fn, value) for key, value in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_structure(fn, value) for value in tree)
    return fn(tree)


def flatten(tree: Tree) -> list[Any]:
    """The leaves of `tree` in a fixed order (dicts in insertion order)."""
    if isinstance(tree, Mapping):
        return [leaf for value in tree.values() for leaf in flatten(value)]
    if isinstance(tree, (tuple, list)):
        return [leaf for value in tree for leaf in flatten(value)]
    return [tree]


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "to_numpy")


def _leaf_to_tensor(value: Any, name: str, float_dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        if _is_pandas(value):
            value = value.to_numpy()
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`{name}` must be an array: a numpy array, torch tensor, pandas object or list of numbers."
                f" Received: {name} of type {type(value).__name__} ({error})"
            ) from None
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise TypeError(
                f"`{name}` must hold numbers (bool, int or float). Received: {name} with dtype {array.dtype}"
            )
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # pandas hands out read-only views; torch warns on those
            array = array.copy()
        tensor = torch.from_numpy(array)
    if tensor.dtype == torch.bool:
        tensor = tensor.to(float_dtype)
    elif tensor.is_floating_point() and tensor.dtype != float_dtype:
        tensor = tensor.to(float_dtype)
    if tensor.ndim == 0:
        raise ValueError(f"`{name}` must have a batch dimension. Received: a scalar {name}={tensor.item()!r}")
    return tensor


def to_tensors(tree: Any, name: str, float_dtype: torch.dtype = torch.float32) -> Tree:
    """Convert every array-like leaf (numpy, torch, pandas, lists of numbers) to a tensor.

    Floating values take `float_dtype` (the module's), as Keras casts to its float type; integers stay
    int64 so they can be class labels or embedding indices.
    """
    if isinstance(tree, Mapping):
        return {key: to_tensors(value, f"{name}[{key!r}]", float_dtype) for key, value in tree.items()}
    if isinstance(tree, tuple) or (isinstance(tree, list) and tree and _is_array_like(tree[0])):
        return tuple(to_tensors(value, f"{name}[{i}]", float_dtype) for i, value in enumerate(tree))
    return _leaf_to_tensor(tree, name, float_dtype)


def _is_array_like(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) or _is_pandas(value)


def num_samples(tree: Tree, name: str) -> int:
    """The common first dimension of every leaf; a ValueError names the leaves that disagree."""
    leaves = flatten(tree)
    counts = {leaf.shape[0] for leaf in leaves}
    if len(counts) > 1:
        raise ValueError(
            f"Every array in `{name}` must have the same number of samples. "
            f"Received sizes: {[leaf.shape[0] for leaf in leaves]}"
        )
    return counts.pop()


def take(tree: Tree, index: torch.Tensor) -> Tree:
    """Rows `index` of every leaf."""
    return map_structure(lambda t: t.index_select(0, index), tree)


def slice_rows(tree: Tree, start: int, stop: int) -> Tree:
    """Rows `[start, stop)` of every leaf, as views."""
    return map_structure(lambda t: t[start:stop], tree)


def to_device(tree: Tree, device: torch.device, non_blocking: bool = False) -> Tree:
    return map_structure(lambda t: t.to(device, non_blocking=non_blocking), tree)


def call_module(module: torch.nn.Module, x: Tree) -> Tree:
    """`module(x)`, `module(*x)` for a tuple/list of inputs, `module(**x)` for a dict."""
    if isinstance(x, Mapping):
        return module(**x)
    if isinstance(x, (tuple, list)):
        return module(*x)
    return module(x)


def float_dtype_of(module: torch.nn.Module) -> torch.dtype:
    """The dtype inputs should take: that of the module's first floating parameter, else float32."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.get_default_dtype()


def concatenate(outputs: Sequence[Tree]) -> Tree:
    """Join per-batch outputs of the same structure along the batch axis, moved to the CPU."""
    return map_structure(lambda t: t.cpu(), join_rows(outputs))


def join_rows(outputs: Sequence[Tree]) -> Tree:
    """Join per-batch outputs of the same structure along the batch axis, where they are."""
    leaves = [flatten(out) for out in outputs]
    joined = iter([torch.cat([batch[i] for batch in leaves]) for i in range(len(leaves[0]))])
    return map_structure(lambda _: next(joined), outputs[0])
