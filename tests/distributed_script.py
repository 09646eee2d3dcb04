"""A training script run under torchrun by test_distributed.py, and in-process as the 1-process reference.

    python -m torch.distributed.run --nproc_per_node=2 tests/distributed_script.py fit,stop,files OUT_DIR

Each rank saves what it ended with to OUT_DIR/rank<r>.pt (test harness only; the library's own files
go to OUT_DIR/files).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch

import epochal
from epochal import parallel, saving
from epochal.callbacks import (
    EMA,
    SWA,
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    backup_and_restore,
)


def data(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()


def mlp_model(dropout: float = 0.0, metrics: tuple[str, ...] = ("accuracy",)) -> epochal.Model:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(4, 16), torch.nn.Tanh()] + ([torch.nn.Dropout(dropout)] if dropout else [])
    module = torch.nn.Sequential(*layers, torch.nn.Linear(16, 3))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.5),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=list(metrics))
    return model


def fit(out: str) -> dict[str, Any]:
    """37 samples in global batches of 8: the last one (5) splits 3/2; then 33 samples: 1/0 (a placeholder).

    AUC (exact: every rank's predictions) and per-class F1 are computed over all ranks' samples."""
    model = mlp_model(metrics=("accuracy", "auc", "f1_score"))
    x, y = data(37, 1)
    x_val, y_val = data(11, 2)
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=(x_val, y_val), validation_batch_size=4,
                        verbose=0)
    second = model.fit(x[:33], y[:33], batch_size=8, epochs=4, initial_epoch=3, verbose=0)
    return {"history": history.history, "epoch": history.epoch, "second": second.history,
            "params": history.params, "evaluate": model.evaluate(x_val, y_val, batch_size=4, verbose=0),
            "predict": model.predict(x_val, batch_size=4, verbose=0), "state": model.module.state_dict()}


def stop(out: str) -> dict[str, Any]:
    """EarlyStopping, and stop_training set by one rank alone (at an epoch's end, then mid-epoch)."""
    model = mlp_model()
    x, y = data(32, 1)
    early = model.fit(x, y, batch_size=8, epochs=6, verbose=0,
                      callbacks=[EarlyStopping(monitor="loss", min_delta=10.0, patience=1)])

    def stop_on_rank1(epoch: int, logs: Any) -> None:
        if epoch == 1 and parallel.rank() == 1:
            model.stop_training = True

    at_epoch_end = model.fit(x, y, batch_size=8, epochs=6, verbose=0,
                             callbacks=[LambdaCallback(on_epoch_end=stop_on_rank1)])
    batches: list[int] = []

    def stop_mid_epoch(batch: int, logs: Any) -> None:
        batches.append(batch)
        if len(batches) == 6 and parallel.rank() == 1:
            model.stop_training = True

    mid_epoch = model.fit(x, y, batch_size=8, epochs=6, verbose=0,
                          callbacks=[LambdaCallback(on_train_batch_end=stop_mid_epoch)])
    return {"early": early.epoch, "at_epoch_end": at_epoch_end.epoch, "mid_epoch": mid_epoch.epoch,
            "batches": batches}


@contextmanager
def recording_writes() -> Iterator[list[str]]:
    """The names of the files this process writes through `atomic_write` (weights, checkpoints, backups), in order."""
    written: list[str] = []
    modules = (saving, backup_and_restore)
    real = saving.atomic_write

    def recording_write(path: str, **kwargs: Any) -> Any:
        written.append(os.path.basename(path))
        return real(path, **kwargs)

    for module in modules:
        module.atomic_write = recording_write  # type: ignore[attr-defined]
    try:
        yield written
    finally:
        for module in modules:
            module.atomic_write = real  # type: ignore[attr-defined]


def files(out: str) -> dict[str, Any]:
    """Checkpoints, a CSV log, epoch lines and `save_weights`: rank 0 writes and prints, the others train."""
    model = mlp_model()
    x, y = data(32, 1)
    folder = os.path.join(out, "files")
    with recording_writes() as written:
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=2, callbacks=[
            ModelCheckpoint(os.path.join(folder, "w-{epoch:02d}.safetensors"), save_weights_only=True),
            CSVLogger(os.path.join(out, "log.csv"))])
    model.save_weights(os.path.join(out, "final.safetensors"))
    return {"history": history.history, "checkpoints_written": written,
            "final_exists_after_save": os.path.exists(os.path.join(out, "final.safetensors"))}


def die(out: str) -> dict[str, Any]:
    """Rank 1 dies in the second epoch: rank 0 must fail, not hang."""
    model = mlp_model()
    x, y = data(32, 1)

    def crash(batch: int, logs: Any) -> None:
        if parallel.rank() == 1 and model.history is not None and len(model.history.epoch) == 1:
            os._exit(3)

    model.fit(x, y, batch_size=8, epochs=50, verbose=0, callbacks=[LambdaCallback(on_train_batch_end=crash)])
    return {}


RESUME_STEPS = 5  # 37 samples in global batches of 8: the last one (5) splits 3/2
SIGTERM_AT, KILL_AT = 7, 14  # global batch numbers (1-based) at which rank 1 is interrupted, once each


class Interrupter(Callback):
    """On rank 1 alone, once per `out` folder (a marker file remembers): SIGTERM itself after global
    batch SIGTERM_AT, then die with `os._exit` after global batch KILL_AT."""

    def __init__(self, out: str | None) -> None:
        super().__init__()
        self.out = out
        self.epoch = 0
        self.batches = 0  # batches this process ran

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.batches += 1
        if self.out is None or parallel.rank() != 1:
            return
        done = self.epoch * RESUME_STEPS + batch + 1
        for at, marker in ((SIGTERM_AT, "signalled"), (KILL_AT, "killed")):
            path = os.path.join(self.out, marker)
            if done == at and not os.path.exists(path):
                open(path, "w").close()
                if marker == "killed":
                    os._exit(1)
                os.kill(os.getpid(), signal.SIGTERM)


def resume(out: str, interrupt: bool = False) -> dict[str, Any]:
    """BackupAndRestore every 3 batches and ModelCheckpoint, with shuffling and per-rank dropout.

    With `interrupt`, the same command is run until it completes: its first launch stops on rank 1's
    SIGTERM, its second dies with rank 1 mid-epoch, its third finishes the job.
    """
    model = mlp_model(dropout=0.25)
    torch.manual_seed(100 + parallel.rank())  # each rank's dropout masks are its own: per-rank RNGs matter
    x, y = data(37, 1)
    x_val, y_val = data(11, 2)
    folder = os.path.join(out, "resume")
    interrupter = Interrupter(out if interrupt else None)
    with recording_writes() as written:
        history = model.fit(x, y, batch_size=8, epochs=4, validation_data=(x_val, y_val), verbose=0, callbacks=[
            BackupAndRestore(os.path.join(folder, "backup"), save_freq=3),
            ModelCheckpoint(os.path.join(folder, "w-{epoch:02d}.safetensors"), save_weights_only=True),
            interrupter])
    return {"history": history.history, "epoch": history.epoch, "state": model.module.state_dict(),
            "batches": interrupter.batches, "written": written}


class TwoOptimizerModel(epochal.Model):
    """A custom train step: each layer its own optimizer, the second step after the first's update."""

    def train_step(self, data: Any) -> dict[str, torch.Tensor]:
        x, y, _ = data
        loss_fn = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
        loss = loss_fn(y, self(x))
        self.backward(loss, optimizer="body")
        self.apply_gradients("body")
        head = loss_fn(y, self(x))
        self.backward(head, optimizer="head")
        self.apply_gradients("head")
        return {"loss": loss, "head_loss": head}


#: Each compile option (and a custom train step) trained on the same data, 1 and 2 processes alike.
OPTIONS: dict[str, dict[str, Any]] = {
    "bf16-mixed": {"precision": "bf16-mixed"},
    "global_clipnorm": {"global_clipnorm": 0.3},
    "gradient_accumulation_steps": {"gradient_accumulation_steps": 2, "clipnorm": 0.5},
    "jit_compile": {"jit_compile": True},
    "steps_per_execution": {"steps_per_execution": 2, "jit_compile": True},
    "custom train_step": {},
}


def options(out: str) -> dict[str, Any]:
    """37 samples in global batches of 8 (the last splits 3/2), shuffled, 2 epochs, per compile option.

    Compiled runs use torch.compile's "aot_eager" backend: the same graphs, without inductor's C++ build."""
    import epochal.step.compiled

    epochal.step.compiled._COMPILE["backend"] = "aot_eager"
    x, y = data(37, 1)
    results = {}
    for name, settings in OPTIONS.items():
        torch.manual_seed(0)
        layers = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        model = (TwoOptimizerModel if name == "custom train_step" else epochal.Model)(layers, device="cpu")
        optimizer: Any = {"body": ("adam", layers[0]), "head": ("sgd", layers[2])} if name == "custom train_step" \
            else "adam"
        model.compile(optimizer=optimizer, loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                      **settings)
        torch.manual_seed(1)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        results[name] = {"state": model.module.state_dict(), "history": history.history}
    return results


def averaging(out: str) -> dict[str, Any]:
    """EMA and SWA with a BatchNorm: each rank sees its own batches, yet all must end with the same weights."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16), torch.nn.Tanh(),
                                 torch.nn.Linear(16, 3))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.5),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data(32, 1)
    ema, swa = EMA(decay=0.8), SWA(start_epoch=1, lr=0.05, anneal_epochs=1)
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=data(8, 2), verbose=0, callbacks=[ema, swa])
    return {"state": model.module.state_dict(), "history": history.history, "updates": (ema.updates, swa.updates)}


def steps(out: str) -> dict[str, Any]:
    """Two named validation sets (11 and 6 samples: uneven blocks), a validation every 3 global batches and
    `max_steps=12` of 3 epochs x 5 batches; then `predict_to`, each rank writing its block's shards."""
    model = mlp_model(metrics=("accuracy", "auc"))
    x, y = data(37, 1)
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data={"a": data(11, 2), "b": data(6, 3)},
                        validation_batch_size=4, validation_every=3, max_steps=12, verbose=0)
    folder = os.path.join(out or tempfile.mkdtemp(), "predictions")
    predictions = model.predict_to(folder, data(11, 2)[0], batch_size=4, verbose=0, max_shard_size=1e-9)
    return {"history": history.history, "validation_steps": history.validation_steps,
            "validation_history": history.validation_history, "state": model.module.state_dict(),
            "predictions": predictions.load(), "expected": model.predict(data(11, 2)[0], batch_size=4, verbose=0)}


def rollback_fork(out: str) -> dict[str, Any]:
    """A Rollback skipping a NaN batch (in one rank's share of it), its backups kept; then a fork of the epoch-1
    backup with nothing changed, which must end where the run did."""
    from epochal.callbacks import Rollback

    x, y = data(37, 1)
    x[20] = float("nan")
    folder = os.path.join(out, "rollback")
    results = {}
    for name, start in (("run", None), ("fork", os.path.join(folder, "backup-00000001.pt"))):
        model = mlp_model(dropout=0.25)
        torch.manual_seed(100 + parallel.rank())
        callbacks = [Rollback(remedy="skip", check_every=2, verbose=0)] + (
            [BackupAndRestore(folder, keep=None, delete_checkpoint=False)] if start is None else [])
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, check_finite=False, callbacks=callbacks,
                            resume_from=start)
        results[name] = {"state": model.module.state_dict(), "history": history.history, "events": history.events}
    return results


SCENARIOS = {"fit": fit, "options": options, "averaging": averaging, "stop": stop, "files": files, "die": die,
             "steps": steps, "resume": resume, "rollback_fork": rollback_fork,
             "resume_interrupted": lambda out: resume(out, interrupt=True)}


def run(names: str, out: str) -> dict[str, Any]:
    """Several scenarios in one launch (each torchrun start costs seconds): `fit,stop,files`."""
    return {name: SCENARIOS[name](out) for name in names.split(",")}


def main() -> None:
    scenario, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    # gloo even where CUDA is available: these are CPU processes (Model(device="cpu")), two per machine
    parallel.init_process_group(backend="gloo", timeout=timedelta(seconds=60))  # compiling on a busy machine is slow
    result = run(scenario, out)
    torch.save(result, os.path.join(out, f"rank{parallel.rank()}.pt"))
    # No rank tears down while another still works: without this barrier a rank sometimes aborted at
    # exit ("terminate called without an active exception", in 13 of about 45 pytest runs that
    # included test_distributed.py), probably on losing rank 0's TCPStore; with it, 0 of 16.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
