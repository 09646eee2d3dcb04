"""One batch's forward pass run again in two runs, every module's output kept, to find the first that differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from epochal.training.rng import capture_rng, restore_rng


@dataclass(frozen=True)
class ModuleDifference:
    """The first module (in run A's call order) whose output differs, and by how much (inf: another shape)."""

    name: str
    largest: float
    modules_alike: int  # modules before it whose outputs were the same

    def __str__(self) -> str:
        what = "another shape" if self.largest == float("inf") else f"a largest difference of {self.largest:.3g}"
        return (f"First module whose output differs on that batch: `{self.name or '(the whole module)'}` ({what}; "
                f"{self.modules_alike} module output(s) before it are the same).")


def inputs_differ(a: Any, b: Any) -> bool:
    """Whether two forward calls' `(args, kwargs)` hold different tensors or values."""
    return not same_values(a, b)


def first_module_difference(a: Any, b: Any) -> ModuleDifference | None:
    """Run `a`'s and `b`'s caught batch forward again (weights before it, RNG as it began, training mode) and
    compare every module's output in `a`'s call order; None when all are the same."""
    outputs_a, outputs_b = _outputs(a), _outputs(b)
    alike = 0
    for name, output in outputs_a:
        other = next((out for other_name, out in outputs_b if other_name == name), None)
        if other is None or not same_values(output, other):
            return ModuleDifference(name, _largest(output, other), alike)
        alike += 1
    return None


def _outputs(caught: Any) -> list[tuple[str, Any]]:
    """Every module's output (in call order) of the caught batch's forward, without changing the run's state."""
    module: torch.nn.Module = caught.module
    saved, rng = {k: v.detach().clone() for k, v in module.state_dict().items()}, capture_rng()
    outputs: list[tuple[str, Any]] = []
    names = {id(sub): name for name, sub in module.named_modules()}
    hooks = [sub.register_forward_hook(lambda m, args, out: outputs.append((names[id(m)], _detached(out))))
             for sub in module.modules()]
    try:
        module.load_state_dict(caught.before)
        restore_rng(caught.rng)
        module.train()
        args, kwargs = caught.inputs
        with torch.no_grad():
            module(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
        module.load_state_dict(saved)
        restore_rng(rng)
    return outputs


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [_detached(item) for item in value]
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    return value


def same_values(a: Any, b: Any) -> bool:
    """Whether two trees (tensors in dicts, lists and tuples, plain values) are bit for bit the same."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _largest(a: Any, b: Any) -> float:
    """The largest absolute difference between two outputs' first tensors (inf when their shapes differ)."""
    first_a, first_b = _first_tensor(a), _first_tensor(b)
    if first_a is None or first_b is None or first_a.shape != first_b.shape:
        return float("inf")
    return float((first_a.double() - first_b.double()).abs().max())


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    return next((found for found in map(_first_tensor, items) if found is not None), None)
