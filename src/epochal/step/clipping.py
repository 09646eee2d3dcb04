"""Gradient clipping with Keras's names, as pure functions of a list of gradients.

`clipnorm` clips each gradient tensor to that L2 norm (`g * c / max(||g||, c)`, Keras's
`clip_by_norm`); `clipvalue` clamps each element; `global_clipnorm` scales all gradients together
exactly as `torch.nn.utils.clip_grad_norm_` does (`c / (total_norm + 1e-6)`, capped at 1). The same
functions serve the eager step (applied to `.grad`) and the compiled step (traced into its graph).
"""

from __future__ import annotations

import torch

from epochal.step.options import StepOptions


def clip_gradients(grads: list[torch.Tensor], options: StepOptions) -> list[torch.Tensor]:
    """`grads` clipped as `options` asks (new tensors; `grads` is not changed)."""
    if options.clipvalue is not None:
        return [g.clamp(-options.clipvalue, options.clipvalue) for g in grads]
    if options.clipnorm is not None:
        limit = options.clipnorm
        return [g * (limit / torch.linalg.vector_norm(g).clamp_min(limit)) for g in grads]
    if options.global_clipnorm is not None:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        coefficient = (options.global_clipnorm / (total + 1e-6)).clamp_max(1.0)
        return [g * coefficient for g in grads]
    return grads


def clip_gradients_(parameters: list[torch.nn.Parameter], options: StepOptions) -> None:
    """Clip the `.grad` of `parameters` in place (the eager step)."""
    if options.global_clipnorm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, options.global_clipnorm)
        return
    with_grad = [p for p in parameters if p.grad is not None]
    clipped = clip_gradients([p.grad for p in with_grad], options)  # type: ignore[misc]
    for parameter, grad in zip(with_grad, clipped):
        parameter.grad.copy_(grad)  # type: ignore[union-attr]
