"""Where two runs part: replay both from their start, batch by batch, and name the first batch after which their
weights differ — which parameter, by how much — and, on request, the first module whose output differs there.

A run is a function `run(probe)` that builds its model afresh and calls `fit` with `probe` among its
callbacks (and `resume_from=` to start from a backup): the same function is called again when needed,
and must train the same way each time (as an epochal run does under a seed, on CPU or with deterministic
kernels). Run A is replayed and every batch's weights recorded as digests; run B is replayed against
them and stops at the first difference; A is replayed once more to that batch. Bit for bit: any
difference counts, however small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.replay.forward import ModuleDifference, first_module_difference, inputs_differ
from epochal.replay.probes import Catch, Recorder

Run = Callable[[Callback], Any]


@dataclass(frozen=True)
class ParameterDifference:
    """How one `state_dict()` entry differs: the largest absolute difference, and that over the entry's largest
    absolute value in run A; `shape` names a difference of shapes instead."""

    name: str
    largest: float
    relative: float
    shape: str | None = None

    def __str__(self) -> str:
        if self.shape is not None:
            return f"{self.name}: {self.shape}"
        return f"{self.name}: largest difference {self.largest:.3g} ({self.relative:.3g} of its largest value)"


@dataclass(frozen=True)
class Divergence:
    """Where runs A and B part. `batches` ran identically before; `at` is `(epoch, batch)` (0-based) of the first
    batch after which the weights differ (in A's numbering; `at_b` in B's), or None: the weights differ
    before any batch (`start`), or never (`parted` False)."""

    parted: bool
    batches: int
    start: bool = False
    at: tuple[int, int] | None = None
    at_b: tuple[int, int] | None = None
    parameters: list[ParameterDifference] = field(default_factory=list)
    inputs_differ: bool | None = None
    module: ModuleDifference | None = None
    note: str = ""

    def __str__(self) -> str:
        if not self.parted:
            return f"The runs do not part: identical weights after each of the {self.batches} batches. {self.note}".strip()
        if self.start:
            head = "The runs differ before their first batch (the weights they start from)"
        elif self.at is None:  # one run stopped earlier: the note says which
            return self.note
        else:
            epoch, batch = self.at  # type: ignore[misc]
            head = (f"The runs part at batch {batch} of epoch {epoch + 1} (after {self.batches} identical batches"
                    + (f"; batch {self.at_b[1]} of epoch {self.at_b[0] + 1} in run B"
                       if self.at_b is not None and self.at_b != self.at else "")
                    + "): its update leaves different weights")
        lines = [head + "."]
        if self.parameters:
            lines.append(f"{len(self.parameters)} entr{'y differs' if len(self.parameters) == 1 else 'ies differ'}, "
                         "largest first:")
            lines += [f"  {difference}" for difference in self.parameters[:10]]
        if self.inputs_differ is not None:
            lines.append("The batch's inputs differ (another data order, batch or augmentation)." if self.inputs_differ
                         else "The batch's inputs are the same.")
        if self.module is not None:
            lines.append(str(self.module))
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def diverge(run_a: Run, run_b: Run, *, forward: bool = False) -> Divergence:
    """Replay runs A and B and find the first batch after which their weights differ.

    Args:
        run_a: `run_a(probe)` trains run A with `probe` among its callbacks (see the module's docstring).
        run_b: Likewise for run B.
        forward: Also run that batch's forward again in both runs, from the weights before it (the same in
            both) and the random state as it began, and name the first module (in A's call order) whose
            output differs. Defaults to `False`.

    Example:
        >>> import torch, epochal
        >>> x, y = torch.randn(32, 3), torch.randn(32, 1)
        >>> def run(lr):
        ...     def train(probe):
        ...         torch.manual_seed(0)
        ...         model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        ...         model.compile(optimizer=torch.optim.SGD(model.module.parameters(), lr=lr), loss="mse")
        ...         model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[probe])
        ...     return train
        >>> diverge(run(0.1), run(0.1)).parted
        False
        >>> divergence = diverge(run(0.1), run(0.2))
        >>> divergence.at, sorted(difference.name for difference in divergence.parameters)
        ((0, 0), ['bias', 'weight'])
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise RuntimeError("`diverge` replays runs in one process: call it outside torch.distributed (a run "
                           "trained under torchrun replays in one process from its backups).")
    recorder = Recorder()
    run_a(recorder)
    if recorder.start is None:
        raise ValueError("Run A trained no batch: `run_a(probe)` must call `fit` with `probe` in its callbacks.")
    caught_b = Catch(trace=recorder.trace, start=recorder.start)
    run_b(caught_b)
    if caught_b.module is None:
        raise ValueError("Run B trained no batch: `run_b(probe)` must call `fit` with `probe` in its callbacks.")
    if caught_b.caught is None:
        ran = caught_b.count
        if ran < len(recorder.trace):
            return Divergence(True, ran, note=f"Run B stopped after {ran} batches and run A went on to "
                                              f"{len(recorder.trace)}: the same weights until then.")
        return Divergence(False, ran)
    index = caught_b.caught
    if index >= len(recorder.trace):
        return Divergence(True, index, note=f"Run A stopped after {len(recorder.trace)} batches and run B went on: "
                                            "the same weights until then.")
    caught_a = Catch(index=index)
    run_a(caught_a)
    if caught_a.caught != index:
        raise RuntimeError(f"Run A did not repeat itself: replayed again it ran {caught_a.count} batches where it "
                           f"had run {len(recorder.trace)}. `run_a` must train the same way each time (seed it).")
    parameters = parameter_differences(caught_a.after, caught_b.after)
    if index == -1:
        return Divergence(True, 0, start=True, parameters=parameters)
    found = Divergence(True, index, at=caught_a.where, at_b=caught_b.where, parameters=parameters)
    if not forward:
        return found
    same_inputs = not inputs_differ(caught_a.inputs, caught_b.inputs)
    module = first_module_difference(caught_a, caught_b)
    note = "" if module is not None else ("The forward pass gives the same outputs in every module: the difference "
                                          "is in the backward pass or the update (learning rate, optimizer, clipping).")
    return Divergence(True, index, at=found.at, at_b=found.at_b, parameters=parameters, inputs_differ=not same_inputs,
                      module=module, note=note)


def parameter_differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[ParameterDifference]:
    """Each entry that differs between two state dicts, the largest difference first."""
    found = []
    for name in list(a) + [name for name in b if name not in a]:
        if name not in a or name not in b:
            found.append(ParameterDifference(name, float("inf"), float("inf"),
                                             shape=f"only in run {'A' if name in a else 'B'}"))
        elif a[name].shape != b[name].shape:
            found.append(ParameterDifference(name, float("inf"), float("inf"),
                                             shape=f"shape {tuple(a[name].shape)} in A, {tuple(b[name].shape)} in B"))
        elif not torch.equal(a[name], b[name]):
            largest = float((a[name].double() - b[name].double()).abs().max())
            scale = float(a[name].double().abs().max())
            found.append(ParameterDifference(name, largest, largest / scale if scale else float("inf")))
    return sorted(found, key=lambda difference: -difference.largest)
