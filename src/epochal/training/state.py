"""Where `fit` is, kept by the loop in one explicit object, so a backup can capture it and a resume
restore it exactly.

The loop tells a `TrainingState` five things: an epoch's batches are about to be drawn
(`epoch_batches`), an epoch starts (`begin_epoch`), a batch and its hooks are done (`after_batch`, a
*safe point*), an epoch and its hooks are done (`end_epoch`, a safe point), training ended
(`finish`). At a safe point the state is complete — weights, optimizers, the step pipeline's loss
scaler and accumulated gradients, every callback, the RNGs —
so that is where a backup is written and where a stop requested by a signal takes effect.

The data order is not stored as such: the state keeps the RNG states from just before the epoch's
batches were drawn, and a mid-epoch resume redraws the epoch from them and skips the batches already
done. This restores a shuffled array's permutation and a DataLoader's sampler and worker seeds alike
(creating a DataLoader iterator draws from torch's global generator). In-memory data also has a
position (`steps_per_epoch` continues where the last epoch stopped: `data.pass_cursor`); the state
keeps it as it was before the epoch's batches were drawn, and a backup at an epoch's end holds the
next epoch's.

Under torch.distributed (`sync` is a `distributed.GroupSync`) every rank reaches the same safe points
and agrees there: on stopping and on a signal after every batch, on whether the state is finite
before a backup. The RNG states, the partial epoch's sums and the callbacks' states are each rank's
own: a backup gathers them from every rank (`"ranks"`, in rank order), rank 0 writes it while the
others wait, and on resume every rank reads it and takes back its own part, so the resumed run
continues exactly as the interrupted one would have. Under DDP the weights and optimizer state are
the same on every rank and go in that file; under FSDP (`sharded`) every rank writes its shards of
them into the backup's shards folder first (`parallel.sharded_state`), and reads its part back —
resharded when the number of ranks changed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from epochal.data import Adapter, Batch
from epochal.dtensors import all_finite
from epochal.training.accumulator import MeanAccumulator
from epochal.training.callback_states import callback_states, restore_callback_states
from epochal.parallel.sync import LOCAL
from epochal.training.preemption import SignalGuard, TrainingInterrupted
from epochal.training.resume_check import differences, mismatch_message
from epochal.training.rng import capture_rng, restore_rng

if TYPE_CHECKING:
    from epochal.callbacks.backup_and_restore import BackupAndRestore
    from epochal.callbacks.callback import Callback
    from epochal.callbacks.callback import ModelView
    from epochal.task import Task
    from epochal.training.fingerprint import RunFingerprint

FORMAT = "epochal.backup"
VERSION = 3  # 2: the RNG states and partial sums are per rank ("ranks"); 3: named optimizers, the step's
#            state, the run fingerprint and callbacks matched by class and position


# -- the state ------------------------------------------------------------------------------------

class ForkStart(Protocol):
    """Where a fork starts (`epochal.training.fork.Fork`): it checks, restores and applies its changes."""

    def begin(self, state: TrainingState) -> ResumePoint: ...


class RollbackPoints(Protocol):
    """A `Rollback` at the loop's safe points (`epochal.training.rollback_points.RollbackPoints`)."""

    def good_point(self) -> None:
        """The state is complete and its losses all read: remember it (it may be returned to)."""

    def after_batch(self, force: bool) -> None:
        """After a batch: read the losses when due (always when `force`); may raise `Rewind`."""

    def before_validation(self) -> None:
        """After an epoch's last batch: read the losses left; may raise `Rewind`."""

    def skips(self, epoch: int, first: int, count: int) -> bool:
        """Whether batches `first .. first+count-1` of `epoch` are dropped."""


class Rewind(Exception):
    """Raised at a safe point by a `Rollback` that restored an earlier state of the epoch: the loop runs the
    epoch again from `point`."""

    def __init__(self, point: ResumePoint) -> None:
        super().__init__(f"rewound to batch {point.batch}")
        self.point = point


@dataclass
class ResumePoint:
    """Where a restored run continues: `batch` batches of `epoch` are already done."""

    epoch: int
    batch: int
    epoch_logs: dict[str, float]
    accumulator: dict[str, Any] = field(default_factory=dict)
    callbacks_note: str | None = None  # how the callbacks differ from the backup's (`callback_states`)


@dataclass
class TrainingState:
    """The loop's position and running sums, plus what a backup needs to capture the whole run.

    `epoch` is the epoch being trained and `batch` how many of its batches are done; after an
    epoch's end they move to `(epoch + 1, 0)`. `model.training_state` is this object during and
    after `fit`.
    """

    model: ModelView
    callbacks: list[Callback] = field(default_factory=list)  # the user's callbacks and History: their state is saved
    fingerprint: RunFingerprint | None = None  # what a resume must match (`resume_check`)
    backup: BackupAndRestore | None = None
    guard: SignalGuard | None = None
    epochs: int = 0
    epoch: int = 0
    batch: int = 0
    accumulator: MeanAccumulator | None = None
    epoch_logs: dict[str, float] = field(default_factory=dict)
    epoch_rng: dict[str, Any] | None = None
    epoch_data: dict[str, Any] | None = None  # the training data's position before this epoch's batches
    resume_data: dict[str, Any] | None = None  # the position a resume starts the data from
    adapter: Adapter | None = None
    finished: bool = False
    stopped: bool = False  # stopped early (a callback, data that ran dry), not by running out of epochs
    finished_cleanly: bool = False  # the run ended and its final, finite state was backed up
    resume_rng: dict[str, Any] | None = None  # the RNG states a mid-epoch resume continues with
    sync: Any = None  # how the ranks agree (`parallel.sync.LocalSync` or `GroupSync`); one process when None
    steps: Any = None  # the step pipeline: its state (loss scaler, gradients being accumulated) is each rank's
    sharded: bool = False  # the module is sharded over the ranks (FSDP): weights and optimizers go in shards
    fork: ForkStart | None = None  # the run this one continues with other settings (`fit(resume_from=...)`)
    rollback: RollbackPoints | None = None  # a `Rollback` callback's snapshots and rewinds

    # -- what the loop calls ----------------------------------------------------------------------

    def epoch_batches(self, adapter: Adapter, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """`adapter`'s batches for `epoch`, remembering the RNG and data position they start from.

        `skip` drops the first batches (a resume inside the epoch)."""
        if self.resume_data is not None:
            adapter.load_state_dict(self.resume_data)  # type: ignore[attr-defined]
            self.resume_data = None
        self.adapter, self.epoch_data = adapter, _data_state(adapter)
        if skip:  # resuming mid-epoch: redraw the epoch exactly as before, then continue from the saved RNG
            restore_rng(self.epoch_rng)  # type: ignore[arg-type]
        else:
            self.epoch_rng = capture_rng()
        batches = iter(adapter.epoch_batches(epoch))
        for done in range(skip):
            if next(batches, None) is None:
                raise RuntimeError(
                    f"Cannot resume at batch {skip} of epoch {epoch}: the training data now yields only {done} "
                    "batches. Resuming needs the same data as the interrupted run."
                )
        if skip:
            restore_rng(self.resume_rng)  # type: ignore[arg-type]
        return batches

    def begin_epoch(self, epoch: int, task: Task, resume: ResumePoint | None, sync: Any) -> MeanAccumulator:
        """A fresh accumulator for `epoch`, or the saved one when resuming inside it."""
        self.epoch, self.batch = epoch, 0
        self.accumulator = MeanAccumulator(task.stateful, sync)
        if resume is None or resume.batch == 0:
            task.reset_stateful()
        else:
            self.batch = resume.batch
            _load_accumulator(self.accumulator, resume.accumulator, self.model.device)
        return self.accumulator

    def after_batch(self, batches: int = 1, save: bool = False) -> bool:
        """A safe point after a call of the train step and its hooks, which ran `batches` batches (several
        for an Execution, which has no safe point inside); returns whether training should stop. `save`
        writes a backup here even when `save_freq` does not ask for one (a pause: `max_time`).

        Ranks agree on a signal and on `stop_training` here (one all-reduce), since each may notice
        a signal at a different batch and a callback may ask one rank alone to stop.
        """
        self.batch += batches
        backup_due = self.backup is not None and self.backup.batch_done(batches)
        signalled, stop = self._sync.agree(self._signalled(), self.model.stop_training)
        if self.rollback is not None:  # losses read before any backup, so a backup is always a good point
            self.rollback.after_batch(force=backup_due or signalled or save)
        if signalled:
            self._stop_for_signal()
        if backup_due or (save and self.backup is not None):
            self.save()
        return stop

    def end_pass(self) -> None:
        """After an epoch's last training batch, before its validation: a Rollback reads what is left."""
        if self.rollback is not None:
            self.rollback.before_validation()

    def mark_good(self) -> None:
        """At the start of training (after any resume): the state a Rollback may return to first."""
        if self.rollback is not None:
            self.rollback.good_point()

    @property
    def skipped(self) -> Callable[[int, int], bool] | None:
        """`skipped(first, count)`: whether a Rollback drops those batches of this epoch (None without one).
        A dropped batch counts in the position (it was drawn), so a resume draws past it again."""
        if self.rollback is None:
            return None
        return self._drops

    def _drops(self, first: int, count: int) -> bool:
        if not self.rollback.skips(self.epoch, first, count):  # type: ignore[union-attr]
            return False
        self.batch += count
        return True

    def end_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """A safe point after `on_epoch_end`: the next position is the start of the following epoch."""
        self.epoch, self.batch, self.accumulator = epoch + 1, 0, None
        self.epoch_logs = dict(logs)
        self.stopped = bool(self.model.stop_training)
        self.finished = self.epoch >= self.epochs or self.stopped
        if self.rollback is not None:
            self.rollback.good_point()
        saved = self.backup is not None and self.save()
        self.finished_cleanly = self.finished and saved
        if self._sync.any(self._signalled()) and not self.finished:
            self._stop_for_signal(saved=saved)

    def finish(self) -> None:
        """After `on_train_end`: a run that finished normally removes its backup (if asked to).

        Rank 0 alone removes it, as it alone writes it: another rank listing the folder while rank 0
        deletes it would fail."""
        if self.backup is not None and self.finished_cleanly:  # never after a non-finite stop: keep the last good one
            self._sync.main_then_wait(self.backup.finish)

    # -- backups ----------------------------------------------------------------------------------

    def save(self) -> bool:
        """Write a backup of the whole run now, unless its loss or weights are not finite (on any rank)."""
        assert self.backup is not None
        sync = self._sync
        if sync.any(not self._finite()):
            self.backup.skip_non_finite(self.epoch, self.batch)
            return False
        ranks = sync.gather(self._rank_state())
        position = {"epoch": self.epoch, "batch": self.batch, "finished": self.finished, "stopped": self.stopped}
        backup, model = self.backup, self.model
        sequence = sync.gather(backup.next_sequence() if sync.rank == 0 else None)[0]  # rank 0's listing
        if self.sharded:  # every rank's shards first: the manifest written last commits them with the rest
            backup.write_shards(sequence, model.module, model.optimizers, sync)
        sync.main_then_wait(lambda: backup.write(self.snapshot(ranks), position, sequence))
        backup.saved()
        return True

    def snapshot(self, ranks: list[dict[str, Any]] | None = None, *, fingerprint: bool = True) -> dict[str, Any]:
        """Everything the rest of the run depends on, as tensors and plain values (no pickle needed).

        `ranks` holds every rank's `_rank_state()`; by default this process's alone. `fingerprint=False`
        leaves out the run's fingerprint (an in-memory snapshot: its first use hashes the data).
        """
        model = self.model
        return {
            "format": FORMAT, "version": VERSION,
            "fingerprint": self.fingerprint.value() if self.fingerprint is not None and fingerprint else {},
            "position": {"epoch": self.epoch, "batch": self.batch, "finished": self.finished, "stopped": self.stopped},
            "epoch_logs": dict(self.epoch_logs),
            "data": self.epoch_data if self.batch else _data_state(self.adapter),
            "sharded": self.sharded,
            **({} if self.sharded else {
                "module": {name: t.detach() for name, t in model.module.state_dict().items()},
                "optimizers": {name: opt.state_dict() for name, opt in model.optimizers.items()}}),
            "ranks": ranks if ranks is not None else [self._rank_state()],
            "callbacks": callback_states(self.callbacks),  # this rank's (rank 0's in a backup), as before "ranks" had them
        }

    def local_snapshot(self) -> dict[str, Any]:
        """This process's whole state now, without the fingerprint: what a Rollback keeps in memory. Its
        tensors may be the run's own, updated in place as training goes on: copy them to keep them."""
        return self.snapshot([self._rank_state()] * self._sync.world_size, fingerprint=False)

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: the RNGs, the partial epoch's sums and the step's gradients still
        being accumulated, not yet synced (on the CPU, to be gathered)."""
        steps = None if self.steps is None else _to_cpu_tree(self.steps.state_dict())
        return {"rng": capture_rng(), "epoch_rng": self.epoch_rng if self.batch else None,
                "accumulator": _accumulator_state(self.accumulator) if self.batch else {}, "steps": steps,
                "callbacks": callback_states(self.callbacks)}

    def resume(self) -> ResumePoint | None:
        """Restore the newest backup, if any, into the model, optimizer, callbacks and RNGs; without one, the
        run a fork starts from (`fork`): a fork that was interrupted continues from its own backups."""
        snapshot = None
        if self.backup is not None:
            snapshot = self.backup.read()
            self._check_same_backup(snapshot)
        if snapshot is not None and self._resumable(snapshot):
            return self.restore(snapshot, self.backup.backup_dir)  # type: ignore[union-attr]
        return None if self.fork is None else self.fork.begin(self)

    def restore(self, snapshot: Mapping[str, Any], where: str, *, forked: bool = False) -> ResumePoint:
        """Load `snapshot` (a backup's contents, from `where`) into the run and move to its position.

        `forked`: a fork continues a run that stopped early (EarlyStopping), as its new settings may not stop.
        """
        position = snapshot["position"]
        self.epoch, self.batch = position["epoch"], position["batch"]
        self.stopped = position["stopped"] and not forked
        # A run that ran out of epochs trains further when `epochs` is now larger (resume_check).
        self.finished = position["finished"] and (self.stopped or self.epoch >= self.epochs)
        own = self._own_part(snapshot["ranks"])  # first: it may refuse, before anything is overwritten
        model = self.model
        if self.sharded:  # a fork and a Rollback are refused under FSDP (run_fit): the shards are the backup's
            self.backup.read_shards(model.module, model.optimizers)  # type: ignore[union-attr]
        else:
            from epochal.saving import _load_module_state

            _load_module_state(model.module, snapshot["module"], where)
            for name, optimizer in model.optimizers.items():
                optimizer.load_state_dict(snapshot["optimizers"][name])
        if self.steps is not None and own.get("steps") is not None:
            self.steps.load_state_dict(own["steps"])
        note = restore_callback_states(self.callbacks, own.get("callbacks", snapshot["callbacks"]))
        if note and not forked:  # a fork records it in its History event instead
            warnings.warn(note, stacklevel=3)
        restore_rng(own["rng"])
        self.finished_cleanly = self.finished
        self.epoch_logs = dict(snapshot["epoch_logs"])
        self.epoch_rng = own["epoch_rng"]
        self.resume_rng = own["rng"]
        self.resume_data = snapshot.get("data")
        return ResumePoint(self.epoch if not self.finished else self.epochs, self.batch, self.epoch_logs,
                           own["accumulator"], note)

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def _sync(self) -> Any:
        if self.sync is None:
            return LOCAL
        return self.sync

    def _signalled(self) -> bool:
        return self.guard is not None and self.guard.received is not None

    def _check_same_backup(self, snapshot: Mapping[str, Any] | None) -> None:
        """Every rank must have read the same backup (a folder not shared by all machines would not be)."""
        read = self._sync.gather(self.backup.sequence_read if snapshot is not None else None)  # type: ignore[union-attr]
        if any(sequence != read[0] for sequence in read):
            found = ", ".join(f"rank {rank}: {'none' if seq is None else f'backup {seq}'}" for rank, seq in enumerate(read))
            raise RuntimeError(
                f"The processes found different backups in {self.backup.backup_dir!r} ({found}). "  # type: ignore[union-attr]
                "Every process must read the backups rank 0 writes: put `backup_dir` on storage that every "
                "machine shares."
            )

    def _own_part(self, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """This rank's RNG states and partial sums from a backup; exact when the world size is unchanged.

        With another number of processes the run continues, but not bit-identically: rank `k` takes
        the RNGs of saved rank `k % saved` (rank 0 keeps rank 0's, and with it the data order) and rank 0
        takes every saved rank's sums; partial torchmetrics states cannot be split and are refused.
        """
        sync = self._sync
        if len(ranks) == sync.world_size:
            return ranks[sync.rank]
        warnings.warn(
            f"The backup was written by {len(ranks)} process(es) and is resumed by {sync.world_size}: training "
            "continues from it, but not bit-identically to a run that was never interrupted.", stacklevel=3)
        own = dict(ranks[sync.rank % len(ranks)])
        if self.batch and any(part["accumulator"].get("stateful") for part in ranks):
            raise ValueError(
                f"Cannot resume mid-epoch with {sync.world_size} processes from a backup written by {len(ranks)}: "
                "the partial epoch's torchmetrics states are per process. Resume with the same number of processes."
            )
        if self.batch:
            own["accumulator"] = _merged_accumulators([part["accumulator"] for part in ranks]) if sync.rank == 0 else {}
        return own

    def _resumable(self, snapshot: Mapping[str, Any]) -> bool:
        """Whether the backup continues this run (`resume_check`); a mismatch raises, or with
        `on_mismatch="restart"` is ignored (False). Nothing is loaded or changed before this."""
        backup = self.backup
        assert backup is not None
        if snapshot.get("format") != FORMAT:
            raise ValueError(f"{backup.backup_dir!r} holds no epochal backup.")
        if snapshot.get("version") != VERSION:
            raise ValueError(
                f"The backup in {backup.backup_dir!r} has format version {snapshot.get('version')!r}; this "
                f"epochal reads version {VERSION}. Resume with the epochal that wrote it, or delete the folder."
            )
        if bool(snapshot.get("sharded", False)) != self.sharded:
            raise ValueError(
                f"The backup in {backup.backup_dir!r} was written " + (
                    "under FSDP (its weights and optimizer state are shards), and this model is not sharded: resume "
                    "it with `Model(..., distributed=\"fsdp\")`" if not self.sharded else
                    "without FSDP, and this model is sharded: resume it without `distributed=\"fsdp\"`") +
                " (under torchrun, with any number of processes), or delete the folder to start afresh.")
        now = self.fingerprint.value() if self.fingerprint is not None else {}
        found = differences(snapshot["fingerprint"], now, snapshot["position"])
        if not found:
            return True
        if backup.on_mismatch == "restart":
            warnings.warn(f"BackupAndRestore(on_mismatch=\"restart\"): the backup in {backup.backup_dir!r} is of "
                          f"another run ({found[0]}); this run starts afresh and replaces it.", stacklevel=4)
            return False
        raise ValueError(mismatch_message(backup.backup_dir, found))

    def _finite(self) -> bool:
        if self.batch and self.accumulator is not None and self.accumulator.sums is not None:
            if not bool(torch.isfinite(self.accumulator.sums[0])):
                return False
        if not self.batch and not math.isfinite(self.epoch_logs.get("loss", 0.0)):
            return False
        return all_finite(self.model.module.state_dict().values())

    def _stop_for_signal(self, saved: bool = False) -> None:
        # Under torch.distributed another rank may have received it (they agree in `after_batch`).
        name = (self.guard.received if self.guard is not None else None) or "a signal to another process"
        where = f"after batch {self.batch} of epoch {self.epoch + 1}" if self.batch else f"after epoch {self.epoch}"
        if self.backup is None:
            outcome = "No BackupAndRestore callback was given, so nothing was saved."
        elif saved or self.save():
            outcome = (f"A backup was written to {self.backup.backup_dir!r}: run the same command again to "
                       "resume exactly where it stopped.")
        else:
            outcome = "The loss or weights are not finite, so the previous backup was kept."
        raise TrainingInterrupted(f"Training stopped by {name} {where}. {outcome}", name)  # type: ignore[arg-type]


def _data_state(adapter: Adapter | None) -> dict[str, Any] | None:
    """Where in-memory data stands (see `data.pass_cursor`); streams have no position to keep."""
    state_dict = getattr(adapter, "state_dict", None)
    return None if state_dict is None else state_dict()


def _accumulator_state(accumulator: MeanAccumulator | None) -> dict[str, Any]:
    if accumulator is None:
        return {}
    return {
        "keys": list(accumulator.keys), "sums": None if accumulator.sums is None else accumulator.sums.cpu(),
        "count": accumulator.count, "stateful": [metric.state_dict() for _, metric in accumulator.stateful()],
    }


def _merged_accumulators(parts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One accumulator holding several ranks' sums and counts (their total is what the epoch needs)."""
    sums = [part["sums"] for part in parts if part.get("sums") is not None]
    keys: list[str] = next((part["keys"] for part in parts if part.get("keys")), [])
    return {"keys": keys, "sums": sum(sums[1:], sums[0].clone()) if sums else None,
            "count": sum(int(part.get("count", 0)) for part in parts), "stateful": []}


def _load_accumulator(accumulator: MeanAccumulator, state: Mapping[str, Any], device: torch.device) -> None:
    sums = state.get("sums")
    accumulator.sums = None if sums is None else sums.to(device)
    accumulator.count = int(state.get("count", 0))
    accumulator.keys = tuple(state.get("keys", ()))
    for (_, metric), saved in zip(accumulator.stateful(), state.get("stateful", [])):
        metric.load_state_dict(saved)


def _to_cpu_tree(value: Any) -> Any:
    """`value` with every tensor in it moved to the CPU (nested dicts and lists)."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, Mapping):
        return {key: _to_cpu_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_cpu_tree(item) for item in value]
    return value
