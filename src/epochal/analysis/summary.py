"""`Model.summary()` in Keras's layout: each layer's name, type, output shape and parameter count, then the
trainable and non-trainable totals and their memory. Output shapes come from torchinfo (an optional
extra), which traces one batch through the module in eval mode without gradients: no weight, buffer or
random state changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from epochal._optional import require


@dataclass(frozen=True)
class LayerRow:
    """One line of the summary: dotted name, class, output shape (`?` when no batch was traced), parameters."""

    name: str
    type: str
    output_shape: str
    params: int
    depth: int


@dataclass(frozen=True)
class ModelSummary:
    """What `summarize` found; `str()` gives Keras's table."""

    name: str
    rows: list[LayerRow]
    trainable: int
    non_trainable: int
    param_bytes: int
    trainable_bytes: int
    buffer_bytes: int
    activation_bytes: int | None  # torchinfo's forward/backward estimate for the traced batch

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable

    def __str__(self) -> str:
        header = ("Layer (type)", "Output Shape", "Param #")
        cells = [(("  " * (row.depth - 1)) + f"{row.name} ({row.type})", row.output_shape, f"{row.params:,}")
                 for row in self.rows]
        widths = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(3)] if cells else \
            [len(h) for h in header]

        def line(left: str, fill: str, middle: str, right: str) -> str:
            return left + middle.join(fill * (w + 2) for w in widths) + right

        def row(values: tuple[str, ...], bar: str) -> str:
            return bar + bar.join(f" {v.ljust(w) if i < 2 else v.rjust(w)} " for i, (v, w) in
                                  enumerate(zip(values, widths))) + bar

        lines = [f'Model: "{self.name}"', line("┏", "━", "┳", "┓"), row(header, "┃"), line("┡", "━", "╇", "┩")]
        lines += [row(c, "│") for c in cells]
        lines.append(line("└", "─", "┴", "┘"))
        lines += [f" Total params: {self.total:,} ({memory(self.param_bytes)})",
                  f" Trainable params: {self.trainable:,} ({memory(self.trainable_bytes)})",
                  f" Non-trainable params: {self.non_trainable:,} ({memory(self.param_bytes - self.trainable_bytes)})"]
        if self.buffer_bytes:
            lines.append(f" Buffers (e.g. normalisation statistics): {memory(self.buffer_bytes)}")
        if self.activation_bytes is not None:
            lines.append(f" Forward/backward pass size of the traced batch: {memory(self.activation_bytes)}")
        return "\n".join(lines)


def memory(size: int) -> str:
    """Bytes as Keras prints them: `18.79 KB` (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GB"  # unreachable: the loop returns at GB


def summarize(module: torch.nn.Module, x: Any = None, *, expand_nested: bool = False) -> ModelSummary:
    """The summary of `module`, tracing the batch `x` (a tensor, or a tuple/dict of them) for output shapes.

    Args:
        module: The network.
        x: One batch of inputs, as `fit` takes them (already tensors). Defaults to `None`: no shapes (`?`).
        expand_nested: List the layers inside nested modules too, indented (Keras's name). Defaults to
            `False`: the module's direct children only.
    """
    torchinfo = require("torchinfo")
    try:
        stats = torchinfo.summary(module, input_data=_as_input(x), verbose=0, depth=64 if expand_nested else 1,
                                  device=_device_of(module))
    except RuntimeError as error:
        raise ValueError(f"`x` could not be traced through the module: {error}. Pass one batch the module accepts.") \
            from None
    names = {id(m): name for name, m in module.named_modules()}
    batch = _batch_size(x)
    shown = [info for info in stats.summary_list if info.depth == 1 or (expand_nested and info.depth > 1)]
    layers = shown or stats.summary_list[:1]  # a module without children is its own only row
    rows = [LayerRow(names.get(id(info.module), info.var_name) or type(module).__name__, info.class_name,
                     _shape(info.output_size, batch), int(info.num_params), max(info.depth, 1)) for info in layers]
    parameters = list({id(p): p for p in module.parameters()}.values())
    trainable = [p for p in parameters if p.requires_grad]
    return ModelSummary(
        name=type(module).__name__, rows=rows, trainable=sum(p.numel() for p in trainable),
        non_trainable=sum(p.numel() for p in parameters if not p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in parameters),
        trainable_bytes=sum(p.numel() * p.element_size() for p in trainable),
        buffer_bytes=sum(b.numel() * b.element_size() for b in module.buffers()),
        activation_bytes=int(stats.total_output_bytes) if x is not None else None,
    )


def _as_input(x: Any) -> Any:
    """torchinfo's convention matches `fit`'s: a tuple means several positional inputs, a dict keywords."""
    if x is None or isinstance(x, (torch.Tensor, dict)):
        return x
    return list(x)


def _device_of(module: torch.nn.Module) -> torch.device | None:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else None


def _batch_size(x: Any) -> int | None:
    if isinstance(x, torch.Tensor):
        return x.shape[0] if x.ndim else None
    values = list(x.values()) if isinstance(x, dict) else list(x or [])
    return _batch_size(values[0]) if values else None


def _shape(size: Any, batch: int | None) -> str:
    """`[32, 64]` as Keras writes it, `(None, 64)`: the batch dimension is None."""
    if not size:
        return "?"
    if isinstance(size[0], (list, tuple)):
        return ", ".join(_shape(s, batch) for s in size)
    dims = ["None" if i == 0 and d == batch else str(d) for i, d in enumerate(size)]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
