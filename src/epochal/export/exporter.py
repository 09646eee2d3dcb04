"""`export_module`: build the program, run it against the module on check batches, and only then write it."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

import torch

from epochal.data.structure import (Tree, call_module, flatten, float_dtype_of, map_structure, num_samples,
                                    slice_rows, to_device, to_tensors)
from epochal.export.comparison import ExportCheckError, largest_difference
from epochal.export.programs import Onnx, ProgramFormat, TorchExport
from epochal.saving import atomic_write

#: The formats `export_module` writes, by name.
FORMATS: dict[str, ProgramFormat] = {"torch.export": TorchExport(), "onnx": Onnx()}

__all__ = ["FORMATS", "ExportCheckError", "ExportResult", "export_module"]


@dataclass(frozen=True)
class ExportResult:
    """What was written and how closely it matched the module on the check batches."""

    path: str
    format: str
    checked_batches: int
    checked_samples: int
    largest_difference: float  # |exported - module| over each output's largest |value|, at worst


def export_module(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    format: str = "torch.export",
    *,
    example: Any,
    check_data: Any = None,
    batch_size: int = 32,
    dynamic_batch: bool = True,
    rtol: float = 1e-5,
    write: bool = True,
) -> ExportResult:
    """Export `module` (in eval mode) as a program that runs without its class, checked before it is written.

    The program is traced on `example` (a batch of inputs, as `x` in `fit`), loaded back from its
    bytes and run on the check batches beside the module; if an output differs by more than `rtol`
    of that output's largest value, an `ExportCheckError` names the largest difference and nothing
    is written. Otherwise the file is written atomically.

    Args:
        module: The module to export.
        path: The file to write (`.pt2` for torch.export and `.onnx` are the usual suffixes).
        format: `"torch.export"` (a `.pt2` program: `torch.export.load(path).module()`) or `"onnx"`
            (needs the `[onnx]` extra: onnxscript to export, onnxruntime to check). Defaults to `"torch.export"`.
        example: A batch of inputs to trace with (at least 2 samples when `dynamic_batch`).
        check_data: Held-out inputs to check on, in batches of `batch_size`. Defaults to `None`: the
            example and its first sample (a second batch size).
        batch_size: Samples per check batch. Defaults to `32`.
        dynamic_batch: Let the program take any batch size (the first dimension of every input);
            `False` fixes it to the example's. Defaults to `True`.
        rtol: The largest difference allowed, relative to each output's largest value. Defaults to `1e-5`.
        write: Write the file (`False` only checks, as every process but one does under torch.distributed).
            Defaults to `True`.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "linear.pt2")
        >>> result = export_module(torch.nn.Linear(3, 2), path, example=torch.randn(4, 3))
        >>> torch.export.load(path).module()(torch.ones(7, 3)).shape, result.checked_samples
        (torch.Size([7, 2]), 5)
    """
    program = _check_arguments(path, format, batch_size, dynamic_batch, rtol)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    inputs = _inputs(module, example, "example", device)
    samples = num_samples(inputs, "example")
    if dynamic_batch and samples < 2:
        raise ValueError("`example` must hold at least 2 samples for a dynamic batch dimension (torch.export fixes "
                         f"a dimension of size 1). Received: {samples} sample; or pass dynamic_batch=False.")
    was_training = module.training
    module.eval()
    try:
        _forward(module, inputs, "example")  # a batch the module cannot take is a ValueError before any export
        batches = _check_batches(module, inputs, check_data, batch_size, samples, dynamic_batch, device)
        args, kwargs = (((), inputs) if isinstance(inputs, dict) else
                        (tuple(inputs), {}) if isinstance(inputs, (tuple, list)) else ((inputs,), {}))
        shapes = _dynamic_shapes(args, kwargs) if dynamic_batch else None
        data = program.build(module, args, kwargs, shapes)
        run = program.load(data)
        worst = max((largest_difference(flatten(_forward(module, batch, "check_data")), run(batch))
                     for batch in batches), key=lambda difference: difference.relative)
    finally:
        module.train(was_training)
    if not worst.relative <= rtol:
        raise ExportCheckError(
            f"The {format} program does not compute what the module does: the largest difference is at "
            f"{worst.describe()}, above rtol={rtol}. Nothing was written. Look for what the exporter cannot "
            "capture: a branch on tensor values, randomness in eval mode, or a layer it translates differently.")
    if write:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(data)
    return ExportResult(os.fspath(path), format, len(batches), sum(num_samples(b, "check_data") for b in batches),
                        worst.relative)


def _check_arguments(path: Any, format: Any, batch_size: Any, dynamic_batch: Any, rtol: Any) -> ProgramFormat:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path. Received: path={path!r}")
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {', '.join(map(repr, FORMATS))}. Received: format={format!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"`dynamic_batch` must be a bool. Received: dynamic_batch={dynamic_batch!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 <= float(rtol) < math.inf:
        raise ValueError(f"`rtol` must be a finite number >= 0. Received: rtol={rtol!r}")
    return FORMATS[format]


def _inputs(module: torch.nn.Module, value: Any, name: str, device: torch.device) -> Tree:
    if value is None:
        raise ValueError(f"`{name}` is required: a batch of inputs, as `x` in `fit`. Received: {name}=None")
    return to_device(to_tensors(value, name, float_dtype_of(module)), device)


def _forward(module: torch.nn.Module, inputs: Tree, name: str) -> Tree:
    """The module's outputs on `inputs`; an error inside torch (a wrong shape) becomes a ValueError naming `name`."""
    try:
        with torch.no_grad():
            return call_module(module, inputs)
    except (RuntimeError, TypeError, IndexError) as error:
        shapes = ", ".join(f"shape {tuple(t.shape)} {t.dtype}" for t in flatten(inputs))
        raise ValueError(f"The module cannot run on `{name}` ({shapes}): {error}. Check that `{name}` has the "
                         "shape and dtype the module expects.") from error


def _check_batches(module: torch.nn.Module, example: Tree, check_data: Any, batch_size: int, samples: int,
                   dynamic_batch: bool, device: torch.device) -> list[Tree]:
    """The batches to compare on: `check_data` in batches (of the example's size when it is fixed), or the example."""
    if check_data is None:
        return [example, slice_rows(example, 0, 1)] if dynamic_batch else [example]
    data = _inputs(module, check_data, "check_data", device)
    count = num_samples(data, "check_data")
    size = batch_size if dynamic_batch else samples
    if count < size and not dynamic_batch:
        raise ValueError(f"`check_data` must hold at least the example's {samples} samples when the batch size is "
                         f"fixed (dynamic_batch=False). Received: {count} samples")
    starts = range(0, count - (count % size if not dynamic_batch else 0), size)
    batches = [slice_rows(data, start, min(start + size, count)) for start in starts]
    for example_leaf, leaf in zip(flatten(example), flatten(data)):
        if example_leaf.shape[1:] != leaf.shape[1:]:
            raise ValueError(f"`check_data` must have the example's shape after the batch dimension: "
                             f"{tuple(example_leaf.shape[1:])}. Received: {tuple(leaf.shape[1:])}")
    return batches


def _dynamic_shapes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """torch.export's spec making the first dimension of every input one shared `batch` dimension."""
    batch = torch.export.Dim("batch")

    def spec(tree: Tree) -> Any:
        return map_structure(lambda tensor: {0: batch}, tree)

    return {name: spec(value) for name, value in kwargs.items()} if kwargs else tuple(spec(arg) for arg in args)
