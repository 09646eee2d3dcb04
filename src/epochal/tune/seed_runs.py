"""Seeds as an axis: the same training run once per seed, so that a result can be told from seed noise."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from epochal.analysis.seed_stats import Estimate, Verdict, best_figures, compare, estimate
from epochal.training.rng import capture_rng, restore_rng

if TYPE_CHECKING:
    from epochal.callbacks.history import History


class Trainable(Protocol):
    """What `seeds` uses of a compiled `epochal.Model`."""

    def fit(self, x: Any = None, y: Any = None, **arguments: Any) -> History: ...


@dataclass(frozen=True)
class SeedRun:
    """One seed's run: its History and its figures at the best epoch (`best_figures`)."""

    seed: int
    history: History
    best: dict[str, Any]


@dataclass(frozen=True)
class SeedRuns:
    """The same run over several seeds; `monitor` chose each run's best epoch."""

    runs: list[SeedRun]
    monitor: str

    def values(self, key: str | None = None) -> list[float]:
        """`key` (default: `monitor`) at each run's best epoch, in seed order."""
        key = key or self.monitor
        missing = [run.seed for run in self.runs if run.best.get(key) is None]
        if missing:
            known = ", ".join(k for k in self.runs[0].best if k != "best epoch")
            raise ValueError(f"`{key}` is not in the runs of seeds {missing}; they have {known}.")
        return [float(run.best[key]) for run in self.runs]

    def estimate(self, key: str | None = None, confidence: float = 0.95) -> Estimate:
        """Mean and `confidence` interval of `key` (default: `monitor`) over the seeds."""
        return estimate(self.values(key), confidence)

    def compare(self, other: SeedRuns, key: str | None = None, *, names: tuple[str, str] = ("A", "B"),
                alpha: float = 0.05) -> Verdict:
        """Whether these runs (named `names[0]`) beat `other`'s on `key` beyond seed noise (Welch's t-test)."""
        key = key or self.monitor
        return compare(names[0], self.values(key), names[1], other.values(key), key, alpha=alpha)


def seeds(build: Callable[[int], Trainable], x: Any = None, y: Any = None, *, seeds: int | Sequence[int] = 5,
          monitor: str = "val_loss", **fit_arguments: Any) -> SeedRuns:
    """Train `build(seed)` on `(x, y)` once per seed: the same configuration, so the spread is seed noise.

    Before each run torch's, numpy's and Python's global generators are seeded with the seed (the data
    order, dropout and anything `build` draws, such as the initial weights); they are put back as they
    were at the end.

    Args:
        build: Returns a compiled `epochal.Model` for a seed (build the module inside it).
        x: Inputs, as `fit` takes them. Defaults to `None`.
        y: Targets. Defaults to `None`.
        seeds: How many seeds (0, 1, ...) or which. Defaults to `5`.
        monitor: The key whose best epoch gives each run's figures. Defaults to `"val_loss"`.
        **fit_arguments: Passed to every `fit` (`epochs`, `batch_size`, `validation_split`, `callbacks`...).

    Example:
        >>> import torch, epochal
        >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
        >>> def build(seed):
        ...     model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        ...     model.compile(optimizer="sgd", loss="mse")
        ...     return model
        >>> runs = epochal.tune.seeds(build, x, y, seeds=3, epochs=2, validation_split=0.25, verbose=0)
        >>> [run.seed for run in runs.runs], runs.estimate("val_loss").n
        ([0, 1, 2], 3)
    """
    chosen = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)  # type: ignore[arg-type]
    if not chosen or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in chosen):
        raise ValueError(f"`seeds` must be a positive number of seeds or a list of seeds >= 0. Received: seeds={seeds!r}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"`seeds` must not repeat a seed: repeated runs are not seed noise. Received: seeds={seeds!r}")
    saved = capture_rng()
    runs = []
    try:
        for seed in chosen:
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            history = build(seed).fit(x, y, **fit_arguments)
            runs.append(SeedRun(seed, history, best_figures(history, monitor)))
    finally:
        restore_rng(saved)
    return SeedRuns(runs, monitor)
