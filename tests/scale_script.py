"""A training script run under torchrun by test_distributed_fsdp.py: FSDP, kill -9 at any point, elastic
restarts, resuming on another number of processes, and bad input. The 1-process references run in-process.

    python -m torch.distributed.run --nproc_per_node=2 tests/scale_script.py fsdp_options,errors OUT_DIR

Each rank saves what it ended with to OUT_DIR/rank<r>.pt (test harness only).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
from distributed_script import OPTIONS, TwoOptimizerModel, data
from safetensors.torch import load_file

import epochal
from epochal import parallel
from epochal.callbacks import BackupAndRestore, Callback, ModelCheckpoint, backup_and_restore
from epochal.parallel import sharded_state

# -- 2 processes under FSDP train like 1 ----------------------------------------------------------

#: The compile options the FSDP runs are checked under (jit_compile compiles each unit's forward).
FSDP_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "bf16-mixed": OPTIONS["bf16-mixed"],
    "accumulation and clipping": OPTIONS["gradient_accumulation_steps"],
    "global_clipnorm": OPTIONS["global_clipnorm"],
    "custom train_step": OPTIONS["custom train_step"],
    "jit_compile": {"jit_compile": True},
    "activation checkpointing": {"checkpoint_modules": ["0", "2"]},  # both FSDP units
}


class CountingLinear(torch.nn.Linear):
    """A Linear that counts its training-mode forwards: a checkpointed one runs again in the backward."""

    training_forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.training_forwards += self.training
        return super().forward(x)


def whole_weights(model: epochal.Model, out: str, name: str) -> dict[str, torch.Tensor]:
    """The model's whole weights, through `save_weights` (FSDP gathers them) read back on every rank."""
    path = os.path.join(out, f"{name}.safetensors")
    model.save_weights(path)
    return load_file(path)


def fsdp_options(out: str, distributed: Any = "fsdp") -> dict[str, Any]:
    """Per option: 37 samples in global batches of 8 (the last splits 3/2), 2 epochs, validation on 11 samples in
    batches of 4 (ranks run 2 and 1 real batches: FSDP keeps them in step), then evaluate and predict."""
    import epochal.step.compiled

    epochal.step.compiled._COMPILE["backend"] = "aot_eager"
    x, y = data(37, 1)
    validation = data(11, 2)
    results = {}
    for name, settings in FSDP_OPTIONS.items():
        torch.manual_seed(0)
        linear = CountingLinear if "checkpoint_modules" in settings else torch.nn.Linear
        layers = torch.nn.Sequential(linear(4, 16), torch.nn.Tanh(), linear(16, 3))
        custom = name == "custom train_step"
        model = (TwoOptimizerModel if custom else epochal.Model)(layers, device="cpu", distributed=distributed)
        optimizer: Any = {"body": ("adam", layers[0]), "head": ("sgd", layers[2])} if custom else "adam"
        model.compile(optimizer=optimizer, loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], **settings)
        torch.manual_seed(1)
        history = model.fit(x, y, batch_size=8, epochs=2, validation_data=validation, validation_batch_size=4,
                            verbose=0)
        results[name] = {"weights": whole_weights(model, out, name), "history": history.history,
                         "units_compiled": [hasattr(m.forward, "_torchdynamo_orig_callable") for m in layers],
                         "training_forwards": [getattr(m, "training_forwards", None) for m in layers],
                         "evaluate": model.evaluate(*validation, batch_size=4, verbose=0),
                         "predict": model.predict(validation[0], batch_size=4, verbose=0)}
    return results


def checkpoint_folder(out: str) -> dict[str, Any]:
    """`Model.save` under FSDP writes a folder of shards; a fresh FSDP model loads it back."""
    model = _mlp("fsdp")
    model.fit(*data(16, 1), batch_size=8, epochs=1, verbose=0)
    folder = os.path.join(out, "checkpoint")
    model.save(folder, {"note": "kept"})
    other = _mlp("fsdp", seed=5)
    metadata = other.load(folder)
    return {"metadata": metadata, "saved": whole_weights(model, out, "saved"),
            "loaded": whole_weights(other, out, "loaded")}


def rank0_start(out: str) -> dict[str, Any]:
    """Each rank builds the module from its own seed; FSDP starts them all from rank 0's weights."""
    torch.manual_seed(parallel.rank())
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 3))
    with torch.no_grad():
        module[1].running_mean.fill_(parallel.rank())
    own = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    model = epochal.Model(module, device="cpu", distributed="fsdp")
    return {"own": own, "start": whole_weights(model, out, "rank0_start")}


def _mlp(distributed: Any, *, dropout: float = 0.0, seed: int = 0) -> epochal.Model:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(4, 16), torch.nn.Tanh()] + ([torch.nn.Dropout(dropout)] if dropout else [])
    model = epochal.Model(torch.nn.Sequential(*layers, torch.nn.Linear(16, 3)), device="cpu", distributed=distributed)
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.5),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


# -- kill -9 at any point, and resume --------------------------------------------------------------

STEPS = 5  # 37 samples in global batches of 8
KILL_AT_BATCH, KILL_IN_WRITE_AFTER = 8, 11  # global batches (1-based): all ranks die; rank 0 dies writing a backup


class Killer(Callback):
    """Kills this launch at the first of its kill points no earlier launch reached (a marker file each):
    every rank SIGKILLs itself after global batch KILL_AT_BATCH, or rank 0 does while writing the first
    backup after global batch KILL_IN_WRITE_AFTER (torchrun then kills the rest)."""

    def __init__(self, out: str, points: tuple[str, ...], ranks: tuple[int, ...] = (0, 1)) -> None:
        super().__init__()
        self.out, self.points, self.ranks = out, points, ranks
        self.armed: str | None = None
        self.epoch = 0
        self.in_write = False

    def on_train_begin(self, logs: Any = None) -> None:
        self.armed = next((p for p in self.points if not os.path.exists(self._marker(p))), None)
        parallel.barrier()  # every rank read the markers before rank 0 adds one
        if self.armed is not None and parallel.rank() == 0:
            open(self._marker(self.armed), "w").close()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        done = self.epoch * STEPS + batch + 1
        if self.armed == "batch" and done == KILL_AT_BATCH and parallel.rank() in self.ranks:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.armed == "write" and done == KILL_IN_WRITE_AFTER:
            self.in_write = True

    def writing(self) -> None:
        """Called as a backup file is opened for writing: dies there when armed (rank 0), noting when."""
        if self.in_write and parallel.rank() == 0:
            with open(os.path.join(self.out, "killed-at"), "w") as handle:
                handle.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)

    def _marker(self, point: str) -> str:
        return os.path.join(self.out, f"killed-{point}")


@contextmanager
def dying_in_writes(killer: Killer | None) -> Iterator[None]:
    """Backup writes (the manifest under DDP, the shards' marker under FSDP) ask `killer` first."""
    if killer is None:
        yield
        return
    modules = (backup_and_restore, sharded_state)
    real = backup_and_restore.atomic_write

    def writing(path: str, **kwargs: Any) -> Any:
        if path.endswith(".json"):
            killer.writing()
        return real(path, **kwargs)

    for module in modules:
        module.atomic_write = writing  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in modules:
            module.atomic_write = real  # type: ignore[attr-defined]


def resume(out: str, distributed: str, killer: Killer | None = None, epochs: int = 4, dropout: float = 0.25,
           folder: str | None = None) -> dict[str, Any]:
    """Backups every 3 batches (and at epoch ends), shuffling, per-rank dropout; ModelCheckpoint writes the whole
    weights (DDP) or a folder of shards (FSDP) each epoch."""
    model = _mlp(distributed, dropout=dropout)
    torch.manual_seed(100 + parallel.rank())  # each rank's dropout masks are its own: per-rank RNGs matter
    x, y = data(37, 1)
    folder = folder or os.path.join(out, f"{distributed}-resume")
    checkpoint = "ckpt-{epoch:02d}" if distributed == "fsdp" else "ckpt-{epoch:02d}.safetensors"
    start, tally = ResumePoint(out, folder), RankTally()
    callbacks = [BackupAndRestore(os.path.join(folder, "backup"), save_freq=3, delete_checkpoint=False),
                 ModelCheckpoint(os.path.join(folder, checkpoint), save_weights_only=distributed != "fsdp"), start,
                 tally]
    with dying_in_writes(killer):
        history = model.fit(x, y, batch_size=8, epochs=epochs, validation_data=data(11, 2), verbose=0,
                            callbacks=callbacks + ([killer] if killer is not None else []))
    return {"history": history.history, "epoch": history.epoch, "weights": whole_weights(model, folder, "final"),
            "resumed_from": start.weights, "tally": tally.tally}


class RankTally(Callback):
    """State that differs between ranks (rank + 1 per batch): a resumed run must give each rank its own back."""

    def __init__(self) -> None:
        super().__init__()
        self.tally = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.tally += parallel.rank() + 1

    def state_dict(self) -> dict[str, Any]:
        return {"tally": self.tally}

    def load_state_dict(self, state: Any) -> None:
        self.tally = state["tally"]


class ResumePoint(Callback):
    """The whole weights as training starts its first batch (after any resume)."""

    def __init__(self, out: str, folder: str) -> None:
        super().__init__()
        self.folder, self.weights = folder, None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if self.weights is None:
            self.weights = whole_weights(self.model, self.folder, "start")  # type: ignore[arg-type]


def elastic(out: str) -> dict[str, Any]:
    """Rank 1 alone is killed after global batch KILL_AT_BATCH; torchrun (--max-restarts) restarts the group."""
    if parallel.rank() == 0:
        with open(os.path.join(out, "starts"), "a") as handle:  # one line per start of the group
            handle.write("started\n")
    return resume(out, "fsdp", Killer(out, ("batch",), ranks=(1,)), folder=os.path.join(out, "elastic"))


def dies_writing(out: str) -> dict[str, Any]:
    """Rank 0 dies in the middle of writing a backup (the others wait for it, on another "node")."""
    return resume(out, "fsdp", Killer(out, ("write",)), folder=os.path.join(out, "dies-writing"))


# -- bad input, refused before training ------------------------------------------------------------


def errors(out: str) -> dict[str, str]:
    """Each bad input's error message (every rank raises it, before training)."""
    x, y = data(16, 1)
    found: dict[str, str] = {}

    def refused(name: str, attempt: Any) -> None:
        try:
            attempt()
        except (ValueError, RuntimeError) as error:
            found[name] = str(error)

    refused("batch size", lambda: _mlp("fsdp").fit(x, y, batch_size=7, verbose=0))
    refused("no parameters", lambda: epochal.Model(torch.nn.ReLU(), device="cpu", distributed="fsdp"))
    sharded_backup = os.path.join(out, "errors", "sharded")
    _mlp("fsdp").fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
        BackupAndRestore(sharded_backup, delete_checkpoint=False)])
    refused("fsdp backup without fsdp", lambda: _mlp("ddp").fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        BackupAndRestore(sharded_backup)]))
    whole_backup = os.path.join(out, "errors", "whole")
    _mlp("ddp").fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
        BackupAndRestore(whole_backup, delete_checkpoint=False)])
    refused("backup without fsdp under fsdp", lambda: _mlp("fsdp").fit(x, y, batch_size=8, epochs=2, verbose=0,
                                                                         callbacks=[BackupAndRestore(whole_backup)]))
    shards = os.path.join(out, "errors", "other-model")
    wider = epochal.Model(torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)),
                          device="cpu", distributed="fsdp")
    wider.save(shards)
    refused("another model's shards", lambda: _mlp("fsdp").load(shards))
    return found


SCENARIOS = {
    "fsdp_options": fsdp_options, "checkpoint_folder": checkpoint_folder, "errors": errors, "rank0_start": rank0_start,
    "ddp_resume": lambda out: resume(out, "ddp"), "fsdp_resume": lambda out: resume(out, "fsdp"),
    "ddp_killed": lambda out: resume(out, "ddp", Killer(os.path.join(out, "ddp"), ("batch", "write"))),
    "fsdp_killed": lambda out: resume(out, "fsdp", Killer(os.path.join(out, "fsdp"), ("batch", "write"))),
    "reshard_start": lambda out: resume(out, "fsdp", epochs=2, dropout=0.0, folder=os.path.join(out, "reshard")),
    "reshard_continue": lambda out: resume(out, "fsdp", dropout=0.0, folder=os.path.join(out, "reshard")),
    "reshard_reference": lambda out: resume(out, "fsdp", dropout=0.0, folder=os.path.join(out, "reshard-reference")),
    "elastic": elastic, "dies_writing": dies_writing,
}


def main() -> None:
    names, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    parallel.init_process_group(backend="gloo", timeout=timedelta(seconds=60))
    for sub in ("ddp", "fsdp"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    result = {name: SCENARIOS[name](out) for name in names.split(",")}
    torch.save(result, os.path.join(out, f"rank{parallel.rank()}.pt"))
    torch.distributed.barrier()  # no rank tears down while another still works (see distributed_script.py)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
