"""Reading a History as a practitioner would: the phase of each epoch, the best epoch, the onset of
overfitting, the generalization gap and what to do next.

Epochs in the dataclass are indices as in `History.epoch` (from 0); the text counts from 1, as the
progress output and EarlyStopping's messages do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from epochal.monitoring import Patience, initial_best, is_improvement, resolve_mode

if TYPE_CHECKING:
    from epochal.analysis.curves import Curves

LEARNING = "learning"  #: both losses falling fast
IMPROVING = "improving"  #: still getting better, steadily
PLATEAU = "plateau"  #: neither loss moving: converged (or stuck)
OVERFITTING = "overfitting"  #: from the onset on: validation done improving while training still improves
DIVERGING = "diverging"  #: training loss rising fast, or a loss that is not finite
UNDERFITTING = "underfitting"  #: the last epoch, when both losses are still falling steeply

MEMORISING = "memorising"
GENERALISING = "generalising"
UNUSUAL = "unusual"


@dataclass(frozen=True)
class Thresholds:
    """The documented cut-offs of `diagnose`; changes are relative to the previous value of a loss.

    Args:
        fast: A loss falling by more than this fraction in one epoch is falling fast (*learning*).
            Defaults to `0.05`.
        flat: A change smaller than this fraction in one epoch is flat (*plateau*). Defaults to `0.005`.
        diverge: The training loss rising in one epoch by more than this fraction of its range over the
            run (max - min) is *diverging*; measured on the range, the noise of a tiny late loss does not
            count. Defaults to `0.1`.
        underfit: Both losses falling by more than this fraction on the last epoch is *underfitting*
            (more epochs would help). Defaults to `0.02`.
        memorising: Train better than validation by more than this fraction of the validation value
            reads as memorising. Defaults to `0.2`.
        unusual: Train worse than validation by more than this fraction reads as unusual.
            Defaults to `0.05`.
    """

    fast: float = 0.05
    flat: float = 0.005
    diverge: float = 0.1
    underfit: float = 0.02
    memorising: float = 0.2
    unusual: float = 0.05


@dataclass(frozen=True)
class Gap:
    """Train against validation for one metric at one epoch; `relative` > 0 means train is better."""

    metric: str
    epoch: int
    train: float
    val: float
    relative: float
    reading: str


@dataclass(frozen=True)
class Diagnosis:
    """What `diagnose` found; `str()` gives the report."""

    monitor: str
    mode: str
    epochs: list[int]
    phases: list[str]
    best_epoch: int | None
    best_value: float | None
    onset_epoch: int | None
    diverged_epoch: int | None
    gaps_at_best: list[Gap]
    gaps_at_last: list[Gap]
    has_validation: bool
    patience: int
    early_stopping_epoch: int | None
    smallest_safe_patience: int | None
    notes: list[str] = field(default_factory=list)
    recommendation: str = ""

    def __str__(self) -> str:
        lines = [f"Diagnosis of {len(self.epochs)} epochs (monitor: {self.monitor}, {self.mode})",
                 f"Phases: {_phase_runs(self.epochs, self.phases)}"]
        if self.best_epoch is not None:
            lines.append(f"Best epoch: {self.best_epoch + 1} ({self.monitor} = {self.best_value:.4g})")
        lines.append("Overfitting onset: " + ("none seen" if self.onset_epoch is None else
                     f"epoch {self.onset_epoch + 1} (validation stops improving for good; training keeps improving)"))
        for title, gaps in (("best", self.gaps_at_best), ("last", self.gaps_at_last)):
            for gap in gaps:
                lines.append(f"Gap at {title} epoch {gap.epoch + 1}, {gap.metric}: train {gap.train:.4g} vs "
                             f"validation {gap.val:.4g}, train {_better_or_worse(gap.relative)} -> {gap.reading}")
        lines.extend(self.notes)
        lines.append(f"Recommendation: {self.recommendation}")
        return "\n".join(lines)


def diagnose(
    history: Curves,
    monitor: str = "val_loss",
    *,
    mode: str = "auto",
    min_delta: float = 0.0,
    patience: int = 3,
    thresholds: Thresholds = Thresholds(),
) -> Diagnosis:
    """Read `history`: per-epoch phases, best epoch, overfitting onset, generalization gaps, advice.

    Phases come from the `loss`/`val_loss` pair. The best epoch and the onset come from `monitor`
    with EarlyStopping's rule (strict improvement beyond `min_delta`); the onset is the epoch after the
    last improvement, provided the training loss still improved after it. A history without
    validation is read from its training keys, and says so.

    Args:
        history: The History of a finished (or interrupted) run.
        monitor: The key that defines "best". Defaults to `"val_loss"`.
        mode: `"min"`, `"max"` or `"auto"` (from the name, as EarlyStopping). Defaults to `"auto"`.
        min_delta: Smallest change that counts as an improvement. Defaults to `0.0`.
        patience: The EarlyStopping patience simulated for the recommendation. Defaults to `3`.
        thresholds: The cut-offs for phases and gap readings. Defaults to `Thresholds()`.

    Example:
        >>> from epochal.callbacks.history import History
        >>> h = History()
        >>> h.epoch, h.history = [0, 1, 2, 3], {"loss": [1.0, .5, .3, .2], "val_loss": [1.0, .6, .5, .55]}
        >>> d = diagnose(h)
        >>> d.best_epoch, d.onset_epoch, d.phases
        (2, 3, ['learning', 'learning', 'learning', 'overfitting'])
    """
    if not history.epoch:
        raise ValueError("The history has no epochs to diagnose: train for at least one epoch.")
    found = _monitored(history, monitor)
    if found is None:
        raise ValueError(f"`monitor` {monitor!r} is not in the history. Available keys: "
                         f"{', '.join(history.history)}.")
    monitor, note = found
    notes: list[str] = [note] if note else []
    mode = resolve_mode(mode, monitor)
    monitored = _series(history, monitor)
    best_epoch, best_value = _best(monitored, mode, min_delta)
    prefix = _validation_prefix(history, monitor)
    loss_key = "loss" if "loss" in history.history else monitor.removeprefix(prefix)
    train_loss = _series(history, loss_key)
    val_loss = _series(history, prefix + loss_key) if prefix + loss_key in history.history else {}
    loss_mode = resolve_mode("auto", loss_key)
    onset = _onset(history.epoch, monitor, monitored, best_epoch, train_loss, loss_mode, thresholds)
    phases = _phases(history.epoch, train_loss, val_loss, loss_mode, onset, thresholds)
    validated = sorted({e for k in history.history if k.startswith("val_") for e in history.epochs_of(k)})
    last_gaps = validated[-1:] if validated[-1:] != [best_epoch] else []
    diagnosis = Diagnosis(
        monitor=monitor, mode=mode, epochs=list(history.epoch), phases=phases,
        best_epoch=best_epoch, best_value=best_value, onset_epoch=onset,
        diverged_epoch=next((e for e, p in zip(history.epoch, phases) if p == DIVERGING), None),
        gaps_at_best=_gaps(history, best_epoch, thresholds, prefix) if best_epoch is not None else [],
        gaps_at_last=[gap for epoch in last_gaps for gap in _gaps(history, epoch, thresholds, prefix)],
        has_validation=bool(validated), patience=patience,
        early_stopping_epoch=early_stopping_epoch(history, monitor, patience=patience, mode=mode,
                                                  min_delta=min_delta),
        smallest_safe_patience=_smallest_safe_patience(history, monitor, best_epoch, mode, min_delta),
        notes=notes,
    )
    return replace(diagnosis, recommendation=_recommend(diagnosis))


def can_diagnose(history: Curves, monitor: str = "val_loss") -> bool:
    """Whether `diagnose(history, monitor)` has something to read: an epoch, and `monitor` (or a stand-in)."""
    return bool(history.epoch) and _monitored(history, monitor) is not None


def _monitored(history: Curves, monitor: str) -> tuple[str, str | None] | None:
    """The key read for `monitor`, with a note when it stands in for a missing one; None when nothing fits.

    A missing `val_<key>` is read from the first named validation set's `val_<name>_<key>`, else from the
    training `<key>` (no validation data)."""
    if monitor in history.history:
        return monitor, None
    if not monitor.startswith("val_"):
        return None
    named = [key for key in history.history if key.startswith("val_") and key.endswith("_" + monitor[4:])]
    if named:
        return named[0], f"No `{monitor}` in the history: reading `{named[0]}`, the first validation set's."
    if monitor[4:] in history.history:
        return monitor[4:], (f"No `{monitor}` in the history (no validation data): reading `{monitor[4:]}`; "
                             "overfitting cannot be seen without validation (use validation_split).")
    return None


def _validation_prefix(history: Curves, monitor: str) -> str:
    """`monitor`'s validation set as a key prefix: `val_`, or `val_<name>_` for a named set (`fit`'s
    `validation_data={name: ...}`), recognised by its `loss` key in the history."""
    if "val_loss" in history.history or not monitor.startswith("val_"):
        return "val_"
    cuts = [i + 1 for i, char in enumerate(monitor) if char == "_" and i >= 4]
    named = [monitor[:cut] for cut in cuts if monitor[:cut] + "loss" in history.history]
    return named[0] if named else "val_"


def early_stopping_epoch(
    history: Curves, monitor: str = "val_loss", *, patience: int = 0, mode: str = "auto",
    min_delta: float = 0.0, baseline: float | None = None, start_from_epoch: int = 0,
) -> int | None:
    """The epoch at which `EarlyStopping(...)` with these settings would have stopped, or None.

    It replays the history through EarlyStopping's own rule (`monitoring.Patience`), so the answer
    follows it exactly.

    Example:
        >>> from epochal.callbacks.history import History
        >>> h = History()
        >>> h.epoch, h.history = [0, 1, 2, 3, 4], {"val_loss": [3.0, 2.0, 2.5, 2.4, 2.6]}
        >>> early_stopping_epoch(h, patience=2)
        3
    """
    rule = Patience(resolve_mode(mode, monitor), min_delta=min_delta, patience=patience, baseline=baseline,
                    start_from_epoch=start_from_epoch)
    for epoch, value in _series(history, monitor).items():
        if rule.update(epoch, value):
            return epoch
    return None


def _series(history: Curves, key: str) -> dict[int, float]:
    return dict(zip(history.epochs_of(key), history.history[key]))


def _gain(before: float, after: float, mode: str) -> float:
    """Relative improvement from `before` to `after` (negative when it got worse)."""
    change = (before - after) if mode == "min" else (after - before)
    return change / abs(before) if before != 0 else change


def _best(series: dict[int, float], mode: str, min_delta: float) -> tuple[int | None, float | None]:
    best_epoch, best = None, initial_best(mode)
    for epoch, value in series.items():
        if is_improvement(value, best, mode=mode, min_delta=min_delta):
            best_epoch, best = epoch, value
    return best_epoch, (None if best_epoch is None else best)


def _onset(epochs: list[int], monitor: str, monitored: dict[int, float], best_epoch: int | None,
           train_loss: dict[int, float], loss_mode: str, thresholds: Thresholds) -> int | None:
    """The epoch after the last validation improvement, if the training loss improved after it."""
    if not monitor.startswith("val_") or best_epoch is None or best_epoch == max(monitored):
        return None
    after = [e for e in epochs if e > best_epoch]
    still_learning = _gain(train_loss[best_epoch], train_loss[epochs[-1]], loss_mode) > thresholds.flat
    return after[0] if after and still_learning else None


def _phases(epochs: list[int], train: dict[int, float], val: dict[int, float], mode: str,
            onset: int | None, thresholds: Thresholds) -> list[str]:
    phases: list[str] = []
    val_epochs = list(val)
    finite = [v for v in train.values() if math.isfinite(v)]
    spread = max(finite) - min(finite) if finite else 0.0
    for i, epoch in enumerate(epochs):
        t_gain = _gain(train[epochs[i - 1]], train[epoch], mode) if i else math.nan
        v_gain = _val_gain(val, val_epochs, epoch, mode)
        worsened = (train[epochs[i - 1]] - train[epoch]) * (1 if mode == "min" else -1) if i else math.nan
        if (not math.isfinite(train[epoch]) or not math.isfinite(val.get(epoch, 0.0))
                or -worsened > thresholds.diverge * spread):
            phases.append(DIVERGING)
        elif i == 0:
            phases.append(LEARNING)
        elif onset is not None and epoch >= onset:
            phases.append(OVERFITTING)
        elif t_gain > thresholds.fast and (v_gain is None or v_gain > thresholds.fast):
            phases.append(LEARNING)
        elif t_gain > thresholds.flat or (v_gain is not None and v_gain > thresholds.flat):
            phases.append(IMPROVING)
        else:
            phases.append(PLATEAU)
    if len(epochs) > 1 and phases[-1] in (LEARNING, IMPROVING):
        last_v = _val_gain(val, val_epochs, val_epochs[-1], mode) if val_epochs else None
        t_last = _gain(train[epochs[-2]], train[epochs[-1]], mode)
        if t_last > thresholds.underfit and (last_v is None or last_v > thresholds.underfit):
            phases[-1] = UNDERFITTING
    return phases


def _val_gain(val: dict[int, float], val_epochs: list[int], epoch: int, mode: str) -> float | None:
    """Validation's improvement per epoch since its previous measurement; None where not measured."""
    if epoch not in val or val_epochs.index(epoch) == 0:
        return None
    previous = val_epochs[val_epochs.index(epoch) - 1]
    return _gain(val[previous], val[epoch], mode) / (epoch - previous)


def _gaps(history: Curves, epoch: int, thresholds: Thresholds, prefix: str = "val_") -> list[Gap]:
    """Train against validation (the set `prefix` names) for every metric at `epoch`."""
    gaps = []
    for key in history.history:
        val_key = prefix + key
        if key.startswith("val_") or val_key not in history.history:
            continue
        train, val = _series(history, key).get(epoch), _series(history, val_key).get(epoch)
        if train is None or val is None or not math.isfinite(train + val):
            continue
        relative = _gain(val, train, resolve_mode("auto", key))
        reading = (MEMORISING if relative > thresholds.memorising else
                   UNUSUAL if relative < -thresholds.unusual else GENERALISING)
        gaps.append(Gap(key, epoch, train, val, relative, reading))
    return gaps


def _smallest_safe_patience(history: Curves, monitor: str, best_epoch: int | None, mode: str,
                            min_delta: float) -> int | None:
    """The least patience with which EarlyStopping would not stop before the best epoch."""
    if best_epoch is None:
        return None
    for patience in range(len(history.epoch) + 1):
        stop = early_stopping_epoch(history, monitor, patience=patience, mode=mode, min_delta=min_delta)
        if stop is None or stop > best_epoch:
            return patience
    return None


def _recommend(d: Diagnosis) -> str:
    parts = []
    if d.diverged_epoch is not None:
        parts.append(f"Training diverged at epoch {d.diverged_epoch + 1}: lower the learning rate "
                     "(`epochal tune lr` measures one) or clip gradients.")
    if d.onset_epoch is not None and d.best_epoch is not None:
        parts.append(f"Stop at epoch {d.best_epoch + 1}, where {d.monitor} was best; "
                     f"overfitting starts at epoch {d.onset_epoch + 1}.")
    elif d.phases[-1] == UNDERFITTING:
        parts.append("Both losses were still falling steeply at the last epoch: train for more epochs.")
    elif d.phases[-1] == PLATEAU:
        parts.append("Training has levelled off: more epochs will not help; a larger model, another "
                     "learning rate or better features might.")
    if d.has_validation and d.best_epoch is not None:
        parts.append(_early_stopping_advice(d))
    parts.append(_gap_advice(d))
    if not d.has_validation:
        parts.append("Add validation data (e.g. validation_split=0.2) to see overfitting.")
    return " ".join(part for part in parts if part)


def _early_stopping_advice(d: Diagnosis) -> str:
    stop, best = d.early_stopping_epoch, d.best_epoch or 0
    if stop is None:
        return f"EarlyStopping(patience={d.patience}) would not have stopped within these epochs."
    if stop < best:
        return (f"EarlyStopping(patience={d.patience}) would have stopped at epoch {stop + 1}, too early: the best "
                f"came at epoch {best + 1}; patience={d.smallest_safe_patience} is the smallest that waits for it.")
    return (f"EarlyStopping(patience={d.patience}) would have stopped at epoch {stop + 1}; "
            "restore_best_weights=True keeps the best epoch's weights.")


def _gap_advice(d: Diagnosis) -> str:
    gaps = d.gaps_at_best or d.gaps_at_last
    gap = next((g for g in gaps if g.metric == d.monitor.removeprefix("val_")), gaps[0] if gaps else None)
    if gap is None:
        return ""
    if gap.reading == MEMORISING:
        return (f"Train beats validation by {gap.relative * 100:.0f}% on {gap.metric}: the model is "
                "memorising; more data, augmentation, dropout, weight decay or a smaller model help.")
    if gap.reading == UNUSUAL:
        return (f"Train is worse than validation on {gap.metric}, which is unusual: check for leakage between "
                "training and validation data or a too-small training set. Dropout and other train-only "
                "regularisation (and training figures averaged over an epoch of changing weights) also make "
                "training look worse.")
    return f"Train and validation agree on {gap.metric}: the model generalises."


def _better_or_worse(relative: float) -> str:
    return f"{'better' if relative >= 0 else 'worse'} by {abs(relative) * 100:.0f}%"


def _phase_runs(epochs: list[int], phases: list[str]) -> str:
    """`1-3 learning, 4-9 improving`: consecutive epochs of one phase, counted from 1."""
    runs: list[list] = []
    for epoch, phase in zip(epochs, phases):
        if runs and runs[-1][2] == phase:
            runs[-1][1] = epoch
        else:
            runs.append([epoch, epoch, phase])
    return ", ".join(f"{a + 1}{'' if a == b else f'-{b + 1}'} {p}" for a, b, p in runs)
