"""Float32 matrix products through oneDNN inside `jit_compile`'s CPU graphs.

torch's `mm` and `addmm` on the CPU call MKL's sgemm. oneDNN's kernel, which torch ships too, ran the
same float32 products 2.0–2.5× faster on this project's AMD EPYC machines (one thread, GFLOP/s:
128×784×256 88 → 176, 4096×256×768 68 → 205), with errors against float64 equal to MKL's: the
same arithmetic in another order. A call costs ~25 µs more in oneDNN and ~25 µs in the custom op's
Python, so only products of at least `MIN_FLOPS` go there (64×64×64 ran 70 → 16). It is a
decomposition applied while a graph is traced, below autograd: the backward's products are
rewritten too, and eager steps (the user's own code) are left alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

#: Floating-point operations (2·M·K·N) from which a product runs in oneDNN: about where its fixed cost
#: is repaid (W1's 128×256×256 layer, 2^24, ran 190 → ~150 µs).
MIN_FLOPS = 2**24


@functools.cache
def _onednn_mm() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`a @ b` as one oneDNN call, registered as a torch operator (once) so a compiled graph can call it."""

    @torch.library.custom_op("epochal::onednn_mm", mutates_args=())
    def onednn_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [], "")

    @onednn_mm.register_fake
    def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.new_empty((a.shape[0], b.shape[1]))

    return onednn_mm


def _large_float32(a: torch.Tensor, b: torch.Tensor) -> bool:
    sizes = (*a.shape, b.shape[1])
    return (a.dtype == b.dtype == torch.float32 and a.device.type == "cpu" and all(isinstance(s, int) for s in sizes)
            and 2 * sizes[0] * sizes[1] * sizes[2] >= MIN_FLOPS)


def decompositions() -> dict[Any, Callable[..., Any]]:
    """`aten.mm` and `aten.addmm` of large float32 CPU matrices as oneDNN products; empty without oneDNN."""
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return {}
    product = _onednn_mm()

    def mm(a: torch.Tensor, b: torch.Tensor) -> Any:
        return product(a, b) if _large_float32(a, b) else NotImplemented

    def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1, alpha: float = 1) -> Any:
        if beta != 1 or alpha != 1 or not _large_float32(a, b):
            return NotImplemented
        return product(a, b) + bias

    aten = torch.ops.aten
    return {aten.mm.default: mm, aten.addmm.default: addmm}
