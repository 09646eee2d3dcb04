"""How far an exported program's outputs are from the module's: the largest difference, relative to each
output's largest value, and where it is."""

from __future__ import annotations

from dataclasses import dataclass

import torch


class ExportCheckError(RuntimeError):
    """The exported program does not compute what the module computes; nothing was written."""


@dataclass(frozen=True)
class Difference:
    """The largest difference found: `relative` is |exported - module| over the output's largest |value|."""

    relative: float
    output: int = 0
    index: tuple[int, ...] = ()
    expected: float = 0.0
    actual: float = 0.0

    def describe(self) -> str:
        return (f"output {self.output} at {list(self.index)}: module {self.expected:.9g}, exported "
                f"{self.actual:.9g} (a difference of {self.relative:.3g} of that output's largest value)")


def largest_difference(expected: list[torch.Tensor], actual: list[torch.Tensor]) -> Difference:
    """The largest relative difference over all outputs; a different number or shape of outputs is an error.

    Example:
        >>> largest_difference([torch.tensor([2.0, 4.0])], [torch.tensor([2.0, 4.5])]).describe()
        "output 0 at [1]: module 4, exported 4.5 (a difference of 0.125 of that output's largest value)"
    """
    if len(expected) != len(actual):
        raise ExportCheckError(f"The exported program returns {len(actual)} outputs; the module returns "
                               f"{len(expected)}.")
    largest: Difference | None = None
    for number, (want, got) in enumerate(zip(expected, actual)):
        want, got = want.detach().cpu().double(), got.detach().cpu().double()
        if want.shape != got.shape:
            raise ExportCheckError(f"Output {number} of the exported program has shape {tuple(got.shape)}; the "
                                   f"module's has {tuple(want.shape)}.")
        if want.numel() == 0:
            continue
        scale = float(want.abs().max())
        errors = (got - want).abs().nan_to_num(nan=float("inf")) / (scale if scale > 0 else 1.0)
        flat = int(errors.argmax())
        if largest is None or float(errors.view(-1)[flat]) > largest.relative:
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape))
            largest = Difference(float(errors.view(-1)[flat]), number, index, float(want[index]), float(got[index]))
    return largest if largest is not None else Difference(0.0)
