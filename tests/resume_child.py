"""A small, fully seeded training run that the kill-and-resume tests start, kill and start again.

    python tests/resume_child.py '{"backup_dir": ..., "out": ..., "kill": "batch:7"}'

`kill` says where the process kills itself: `batch:K` (SIGKILL after the K-th training batch this
process ran), `validation:E` (inside epoch E's validation), `write:K:pt|json` (halfway through
writing the data file or the manifest of the K-th backup this process writes), `train_end` (after
`on_train_end`, before the backup is deleted), `sigterm:K` (SIGTERM after the K-th batch: a graceful
stop), or `none`. With `"averaging": true` the run also keeps an EMA (validated on) and an SWA
(from epoch 2, SWALR, BatchNorm recomputed at the end), whose averages must resume exactly too;
`"checkpoints": FOLDER` adds a `ModelCheckpoint(keep_best=2, keep_last=1)` writing there; `steps_per_epoch`
(optional) makes epochs continue through the shuffled data; `validation_every` (optional) also validates
every N batches (`validation:E` then kills inside the first validation of epoch E, mid-epoch). The tests run the killed run as a subprocess and the
resumed one in-process
(`run(config)`), which is the same code. Every RNG the run draws from is used: shuffling and dropout (torch), and a
noise layer drawing from numpy and Python's `random`.
"""

import json
import os
import random
import signal
import sys
from contextlib import contextmanager

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))

import epochal  # noqa: E402
import epochal.callbacks.backup_and_restore as backup_module  # noqa: E402
from epochal.callbacks import (EMA, SWA, BackupAndRestore, Callback, EarlyStopping,  # noqa: E402
                               LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau)

EPOCHS, SAMPLES, BATCH = 5, 200, 16


class Noise(torch.nn.Module):
    """Training-time noise from numpy and Python's `random`, so those generators matter too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x + 1e-2 * float(np.random.normal()) + 1e-2 * random.random()


class Killer(Callback):
    def __init__(self, kill: str) -> None:
        super().__init__()
        self.kind, _, arg = kill.partition(":")
        self.arg = arg
        self.batches = 0
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.kind in ("batch", "sigterm") and self.batches == int(self.arg):
            os.kill(os.getpid(), signal.SIGKILL if self.kind == "batch" else signal.SIGTERM)

    def on_test_batch_end(self, batch, logs=None):
        if self.kind == "validation" and self.epoch == int(self.arg):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self, logs=None):
        if self.kind == "train_end":
            os.kill(os.getpid(), signal.SIGKILL)

    def state_dict(self):
        return {}


def kill_during_writes(which: int, suffix: str) -> None:
    """Make the `which`-th backup write of a `suffix` file die halfway through its bytes."""
    real = backup_module.atomic_write
    count = {"n": 0}

    @contextmanager
    def dying_write(path, **kwargs):
        with real(path, **kwargs) as handle:
            if str(path).endswith("." + suffix):
                count["n"] += 1
                if count["n"] == which:
                    original = handle.write

                    def write(data):
                        original(data[: len(data) // 2])
                        handle.flush()
                        os.fsync(handle.fileno())
                        os.kill(os.getpid(), signal.SIGKILL)

                    handle.write = write
            yield handle

    backup_module.atomic_write = dying_write


def run(config: dict) -> tuple[dict, dict]:
    """Train as configured; returns the final state_dict and {"epoch", "history", "batches"}."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(SAMPLES, 6, generator=generator)
    y = (x[:, :3].sum(1) > x[:, 3:].sum(1)).long()
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), Noise(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(16, 2))
    model = epochal.Model(net, device="cpu")
    model.compile(optimizer=torch.optim.Adam(net.parameters(), lr=0.02),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    kill = config.get("kill", "none")
    if kill.startswith("write:"):
        _, which, suffix = kill.split(":")
        kill_during_writes(int(which), suffix)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(model.optimizer, T_max=40)
    callbacks = [
        BackupAndRestore(config["backup_dir"], save_freq=config.get("save_freq", 4)),
        EarlyStopping(monitor="val_loss", patience=config.get("patience", 3), restore_best_weights=True),
        ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_delta=0.0),
        LearningRateScheduler(cosine, per="batch"),
        *([EMA(decay=0.9), SWA(start_epoch=2, lr=0.01, anneal_epochs=1)] if config.get("averaging") else []),
        *([ModelCheckpoint(os.path.join(config["checkpoints"], "{epoch:02d}.safetensors"), save_weights_only=True,
                           keep_best=2, keep_last=1)] if config.get("checkpoints") else []),
        Killer(kill),
    ]
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, validation_split=0.2, shuffle=True,
                        callbacks=callbacks, verbose=0, steps_per_epoch=config.get("steps_per_epoch"),
                        validation_every=config.get("validation_every"))
    return net.state_dict(), {"epoch": history.epoch, "history": history.history, "batches": callbacks[-1].batches,
                              "validation_steps": history.validation_steps,
                              "validation_history": history.validation_history}


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    state, record = run(config)
    if config.get("out"):
        save_weights_only = {k: v for k, v in state.items()}
        torch.save(save_weights_only, config["out"] + ".pt")
        with open(config["out"] + ".json", "w") as handle:
            json.dump(record, handle)
