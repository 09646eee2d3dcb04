"""Targets checked against what each loss reads (class indices in range and whole, probabilities in
[0, 1]) over all of the data, before any update.

What a loss reads depends on the model's output (how many classes), so the checks are made once a
first batch's output exists: in-memory targets are then checked whole, at once, and a stream is
armed to check each later batch on the host before it reaches the step (`epochal.data.checks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epochal.data.checks import TargetCheck, check_values
from epochal.data.structure import Tree
from epochal.task import Task


def arm_target_checks(task: Task, outputs: Tree, y_first: Tree, adapter: Any, where: str = "") -> None:
    """Check `adapter`'s targets against the losses: all of them now if in memory, else each batch as it comes.

    Args:
        task: The compiled task, built on `outputs`.
        outputs: The module's output on the first batch.
        y_first: The first batch's targets.
        adapter: The data adapter the batch came from (arrays, a sharded view of them, or a stream).
        where: How errors introduce the data, e.g. `"validation data: "`. Defaults to `""`.
    """
    check = target_check(task, outputs, y_first)
    if check is None:
        return
    arrays = getattr(adapter, "arrays", adapter)  # the whole arrays behind a rank's shard
    if getattr(arrays, "y", None) is not None:
        check(arrays.y, where)
    elif hasattr(adapter, "check_targets"):
        check(y_first, f"batch 0 of `{adapter.name}`: ")
        adapter.check_targets = check


def target_check(task: Task, outputs: Tree, y_first: Tree) -> TargetCheck | None:
    """A function checking a `y` (of the first batch's structure) against every loss's domain; None if none has one."""
    out_list, y_list = task.split(outputs, y_first)
    domains = [loss.target_domain(target, out)
               for loss, out, target in zip(task.losses(), out_list, y_list)]
    if not any(domains):
        return None

    def check(y: Tree, where: str) -> None:
        targets = task.split(outputs, y)[1]
        for index, (domain, target) in enumerate(zip(domains, targets)):
            if domain is not None:
                check_values(target, f"{where}`{_name(y, index, task)}`", low=domain.low, high=domain.high,
                             whole=domain.whole, ignore=domain.ignore, expected=domain.expected)

    return check


def _name(y: Tree, index: int, task: Task) -> str:
    """How the user passed the `index`-th target: `y`, `y[1]` or `y['out']`."""
    if isinstance(y, Mapping):
        return f"y[{(task.output_names or list(y))[index]!r}]"
    if isinstance(y, (tuple, list)):
        return f"y[{index}]"
    return "y"
