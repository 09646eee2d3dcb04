"""Data checks made before any training: NaN/inf, sample weights, target values.

In-memory data is checked whole, once, in one vectorised pass per array (`torch.aminmax`: a NaN
anywhere makes both ends NaN, an inf makes one end infinite), so a bad value late in the data is an
error before the first update, not a NaN model after it. Streamed batches are checked the same way
on the host, before they are moved to the device and reach the step: no check adds a device sync.
Each error names the argument (and the batch), the value found and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from epochal.data.structure import Tree

#: Checks a batch's targets against what the loss reads (`epochal.training.target_checks`).
TargetCheck = Callable[[Tree, str], None]


def check_data(adapters: Iterable[tuple[Any, str]], *, check_finite: bool) -> None:
    """Check in-memory data whole, now: finite `x`, `y` and weights, weights >= 0; a stream, each batch.

    Args:
        adapters: Each data adapter (or None) with how errors introduce it (`""`, `"validation_data: "`).
        check_finite: Refuse NaN and infinite values.
    """
    for adapter, where in adapters:
        if hasattr(adapter, "check_targets"):  # a stream: checked batch by batch as it is read
            adapter.check_finite = check_finite
        elif adapter is not None:
            check_batch(adapter.x, adapter.y, adapter.sample_weight, where, check_finite=check_finite)


def check_batch(x: Tree, y: Tree | None, sample_weight: torch.Tensor | None, where: str, *,
                check_finite: bool, check_targets: TargetCheck | None = None) -> None:
    """Check one batch (or all of in-memory data); `where` prefixes the argument names in errors."""
    if check_finite:
        for name, tree in (("x", x), ("y", y), ("sample_weight", sample_weight)):
            for path, leaf in _named_leaves(tree, name):
                if leaf.is_floating_point():
                    _check_finite(leaf, f"{where}`{path}`")
    if sample_weight is not None:
        _check_non_negative(sample_weight, f"{where}`sample_weight`")
    if check_targets is not None and y is not None:
        check_targets(y, where)


def per_sample_weights(sample_weight: torch.Tensor, samples: int, name: str, where: str = "") -> torch.Tensor:
    """`sample_weight` as one weight per sample, shape `(samples,)`: from `(N,)` or `(N, 1)`, nothing else.

    `where` prefixes the argument's name in errors (`"batch 3 of `dataset`: "`), as in `check_batch`.
    """
    if sample_weight.ndim == 2 and sample_weight.shape[1] == 1:
        return sample_weight[:, 0]
    if sample_weight.ndim != 1:
        raise ValueError(
            f"{where}`{name}` must be 1-D, one weight per sample ({samples}). Received: shape {tuple(sample_weight.shape)}. "
            "For per-timestep weights, weight the loss in a custom `compute_loss`."
        )
    return sample_weight


def check_values(values: torch.Tensor, name: str, *, low: float, high: float, whole: bool,
                 ignore: int | None, expected: str) -> None:
    """Every value of `values` (but `ignore`) within `[low, high]`, and a whole number if `whole`."""
    if ignore is not None:
        values = values[values != ignore]
    if not values.numel():
        return
    if whole and values.is_floating_point():
        fractional = values != values.round()
        if bool(fractional.any()):
            found = values[fractional][0].item()
            raise ValueError(f"{name} holds {found!r}, which is not a whole number: {expected}. Labels are "
                             "never rounded silently; fix the data.")
    smallest, largest = (v.item() for v in torch.aminmax(values))
    if smallest < low or largest > high:
        raise ValueError(f"{name} holds values in [{_number(smallest)}, {_number(largest)}]: {expected}.")


def _named_leaves(tree: Tree | None, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every leaf, named as `to_tensors` names them (`x[0]`, `y['a']`)."""
    if tree is None:
        return
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _named_leaves(value, f"{name}[{key!r}]")
    elif isinstance(tree, (tuple, list)):
        for index, value in enumerate(tree):
            yield from _named_leaves(value, f"{name}[{index}]")
    else:
        yield name, tree


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if not tensor.numel():
        return
    smallest, largest = torch.aminmax(tensor.detach())
    if bool(torch.isfinite(smallest)) and bool(torch.isfinite(largest)):
        return
    bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()  # only on error: where, for the message
    where = bad[0] if len(bad) == 1 else tuple(bad)
    raise ValueError(
        f"{name} holds NaN or infinite values (the first, {tensor[tuple(bad)].item()}, at index {where}). "
        "Clean the data (e.g. drop or impute those rows), or pass `check_finite=False` to train on it anyway."
    )


def _check_non_negative(weights: torch.Tensor, name: str) -> None:
    if not weights.numel():
        return
    smallest = torch.amin(weights.detach())
    if bool(smallest >= 0) or bool(torch.isnan(smallest)):  # NaN: the finiteness check's to report
        return
    where = int((weights < 0).nonzero()[0][0])
    raise ValueError(f"{name} must not be negative. Received: {weights.reshape(-1)[where].item()} at index {where}.")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
