"""Learning-rate schedules: plain functions of the step (or epoch) index, built by small factories.

Each factory returns `schedule(index) -> float`, pure and stateless, so a schedule can be tested,
plotted or composed without an optimizer. `LearningRateScheduler` applies one per epoch or per batch.
Formulas follow Keras's `keras.optimizers.schedules` where Keras has the schedule, and PyTorch's
`OneCycleLR` for `one_cycle`.

Example:
    >>> warm_then_cosine = join([linear_warmup(0.0, 0.1, 10), cosine_decay(0.1, 90)], boundaries=[10])
    >>> [round(warm_then_cosine(i), 4) for i in (0, 5, 10, 55, 100)]
    [0.0, 0.05, 0.1, 0.05, 0.0]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

Schedule = Callable[[int], float]


def _require_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={value!r}")


def _require_increasing(boundaries: Sequence[int]) -> None:
    if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
        raise ValueError(f"`boundaries` must be strictly increasing. Received: boundaries={list(boundaries)}")


def constant(value: float) -> Schedule:
    """The same learning rate at every index.

    Example:
        >>> constant(0.1)(1000)
        0.1
    """
    return lambda index: float(value)


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """`values[0]` up to and including `boundaries[0]`, `values[1]` up to `boundaries[1]`, ... (Keras).

    Args:
        boundaries: Strictly increasing indices where the value changes.
        values: One more value than boundaries.

    Example:
        >>> schedule = piecewise_constant([10, 20], [1.0, 0.5, 0.1])
        >>> [schedule(i) for i in (10, 11, 20, 21)]
        [1.0, 0.5, 0.5, 0.1]
    """
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"`values` must have one more entry than `boundaries`. Received: {len(boundaries)} boundaries "
            f"and {len(values)} values"
        )
    _require_increasing(boundaries)
    boundaries, values = list(boundaries), [float(v) for v in values]
    return lambda index: values[bisect.bisect_left(boundaries, index)]


def exponential_decay(initial: float, decay_steps: int, decay_rate: float, staircase: bool = False) -> Schedule:
    """`initial * decay_rate ** (index / decay_steps)`, with the exponent floored when `staircase` (Keras).

    Args:
        initial: Learning rate at index 0.
        decay_steps: Indices over which the rate is multiplied by `decay_rate` once.
        decay_rate: The multiplier per `decay_steps`.
        staircase: Decay in whole steps every `decay_steps` instead of smoothly. Defaults to `False`.

    Example:
        >>> exponential_decay(1.0, 10, 0.5)(5) == 0.5 ** 0.5
        True
    """
    _require_positive("decay_steps", decay_steps)

    def schedule(index: int) -> float:
        exponent = index / decay_steps
        return float(initial * decay_rate ** (math.floor(exponent) if staircase else exponent))

    return schedule


def step_decay(initial: float, decay_steps: int, decay_rate: float) -> Schedule:
    """Multiply the rate by `decay_rate` every `decay_steps` indices: `exponential_decay(..., staircase=True)`.

    Example:
        >>> [step_decay(1.0, 2, 0.1)(i) for i in range(5)]
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """
    return exponential_decay(initial, decay_steps, decay_rate, staircase=True)


def _cosine(fraction: float, alpha: float, peak: float = 1.0) -> float:
    """`(1 - alpha) * peak * (1 + cos(pi * fraction)) / 2 + alpha`: from about `peak` down to `alpha`."""
    return (1 - alpha) * 0.5 * peak * (1 + math.cos(math.pi * fraction)) + alpha


def cosine_decay(
    initial: float,
    decay_steps: int,
    alpha: float = 0.0,
    warmup_steps: int = 0,
    warmup_target: float | None = None,
) -> Schedule:
    """Cosine decay, optionally after a linear warmup, exactly as Keras's `CosineDecay`.

    Without `warmup_target` the rate goes from `initial` to `initial * alpha` over `decay_steps`.
    With it, the rate first rises linearly from `initial` to `warmup_target` over `warmup_steps`,
    then decays from `warmup_target` to `warmup_target * alpha` over `decay_steps`; it stays at the
    floor afterwards.

    Args:
        initial: Learning rate at index 0.
        decay_steps: Length of the decay.
        alpha: Final rate as a fraction of the decay's starting rate. Defaults to `0.0`.
        warmup_steps: Length of the warmup (used only with `warmup_target`). Defaults to `0`.
        warmup_target: Rate reached at the end of the warmup; `None` skips the warmup. Defaults to `None`.

    Example:
        >>> cosine_decay(1.0, 10)(5)
        0.5
    """
    _require_positive("decay_steps", decay_steps)
    if warmup_target is None:
        return lambda index: float(initial * _cosine(min(index, decay_steps) / decay_steps, alpha))

    def schedule(index: int) -> float:
        index = min(index, decay_steps + warmup_steps)
        if index < warmup_steps:
            return float(initial + (warmup_target - initial) * index / warmup_steps)
        return float(warmup_target * _cosine((index - warmup_steps) / decay_steps, alpha))

    return schedule


def cosine_decay_restarts(
    initial: float, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0
) -> Schedule:
    """Cosine decay with warm restarts (SGDR), exactly as Keras's `CosineDecayRestarts`.

    The first period lasts `first_decay_steps`; each later one is `t_mul` times longer and starts
    from `m_mul` times the previous period's starting rate.

    Args:
        initial: Learning rate at index 0.
        first_decay_steps: Length of the first period.
        t_mul: Growth factor of each period's length. Defaults to `2.0`.
        m_mul: Factor on each period's starting rate. Defaults to `1.0`.
        alpha: Floor as a fraction of `initial`. Defaults to `0.0`.

    Example:
        >>> schedule = cosine_decay_restarts(1.0, 10)
        >>> [round(schedule(i), 3) for i in (0, 5, 10, 20)]
        [1.0, 0.5, 1.0, 0.5]
    """
    _require_positive("first_decay_steps", first_decay_steps)

    def schedule(index: int) -> float:
        fraction = index / first_decay_steps
        if t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            restart = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
            elapsed = (1.0 - t_mul**restart) / (1.0 - t_mul)  # earlier periods, in first-period units
            fraction = (fraction - elapsed) / t_mul**restart
        return float(initial * _cosine(fraction, alpha, peak=m_mul**restart))

    return schedule


def linear_warmup(initial: float, target: float, warmup_steps: int) -> Schedule:
    """Rise linearly from `initial` at index 0 to `target` at `warmup_steps`, then stay at `target`.

    Example:
        >>> [linear_warmup(0.0, 1.0, 4)(i) for i in (0, 1, 4, 9)]
        [0.0, 0.25, 1.0, 1.0]
    """
    _require_positive("warmup_steps", warmup_steps)
    return lambda index: float(initial + (target - initial) * min(index, warmup_steps) / warmup_steps)


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
) -> Schedule:
    """The 1cycle policy, as PyTorch's `OneCycleLR` (two phases): up to `max_lr`, then far below the start.

    The rate rises from `max_lr / div_factor` to `max_lr` until index `pct_start * total_steps - 1`,
    then falls to `max_lr / div_factor / final_div_factor` at index `total_steps - 1`, and stays there.

    Args:
        max_lr: The peak learning rate.
        total_steps: Number of indices in the cycle.
        pct_start: Fraction of the cycle spent rising. Defaults to `0.3`.
        div_factor: `max_lr / div_factor` is the starting rate. Defaults to `25.0`.
        final_div_factor: The final rate is the starting rate divided by this. Defaults to `1e4`.
        anneal: `"cos"` or `"linear"` interpolation within each phase. Defaults to `"cos"`.

    Example:
        >>> schedule = one_cycle(1.0, 100)
        >>> [round(schedule(i), 6) for i in (0, 29, 99)]
        [0.04, 1.0, 4e-06]
    """
    _require_positive("total_steps", total_steps)
    if not 0.0 < pct_start < 1.0:
        raise ValueError(f"`pct_start` must be in (0, 1). Received: pct_start={pct_start!r}")
    if anneal not in ("cos", "linear"):
        raise ValueError(f"`anneal` must be 'cos' or 'linear'. Received: anneal={anneal!r}")
    start = max_lr / div_factor
    end = start / final_div_factor
    peak_index = pct_start * total_steps - 1
    last_index = total_steps - 1

    def interpolate(a: float, b: float, fraction: float) -> float:
        if anneal == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * fraction) + 1)
        return a + (b - a) * fraction

    def schedule(index: int) -> float:
        index = min(index, last_index)
        if index <= peak_index:
            return float(interpolate(start, max_lr, index / peak_index))
        return float(interpolate(max_lr, end, (index - peak_index) / (last_index - peak_index)))

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run `schedules[i]` from `boundaries[i-1]` on, each seeing the index relative to its own start.

    Args:
        schedules: The pieces, in order.
        boundaries: Strictly increasing indices where the next piece takes over; one fewer than
            `schedules`.

    Example:
        >>> schedule = join([constant(1.0), exponential_decay(1.0, 1, 0.5)], boundaries=[3])
        >>> [schedule(i) for i in range(6)]
        [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            f"`schedules` must have one more entry than `boundaries`. Received: {len(schedules)} schedules "
            f"and {len(boundaries)} boundaries"
        )
    _require_increasing(boundaries)
    starts = [0, *boundaries]

    def schedule(index: int) -> float:
        piece = bisect.bisect_right(boundaries, index)
        return schedules[piece](index - starts[piece])

    return schedule
