"""Mixed precision: autocast for the forward pass and loss, and a loss scaler for float16.

`"bf16-mixed"` autocasts to bfloat16 (CPU and CUDA; no scaler: bfloat16 has float32's range);
`"16-mixed"` autocasts to float16 and scales the loss with `torch.amp.GradScaler`, skipping an update
whose gradients overflowed, as Lightning and Keras's `LossScaleOptimizer` do. Losses are computed in
float32 whatever the output's dtype (see `losses._compute_precision`). Parameters and optimizer
state stay in their own dtype (float32).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The context the forward pass and loss run in: autocast for mixed precision, else nothing."""
    dtype = _DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for `"16-mixed"`, else None."""
    if precision != "16-mixed":
        return None
    return torch.amp.GradScaler(device.type)
