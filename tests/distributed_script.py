"""A training script run under torchrun by test_distributed.py, and in-process as the 1-process reference.

    python -m torch.distributed.run --nproc_per_node=2 tests/distributed_script.py fit,stop,files OUT_DIR

Each rank saves what it ended with to OUT_DIR/rank<r>.pt (test harness only; the library's own files
go to OUT_DIR/files).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import torch

import epochal
from epochal import distributed
from epochal.callbacks import (
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    model_checkpoint,
)


def data(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()


def mlp_model() -> epochal.Model:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.5),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def fit(out: str) -> dict[str, Any]:
    """37 samples in global batches of 8: the last one (5) splits 3/2; then 33 samples: 1/0 (a placeholder)."""
    model = mlp_model()
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
                      callbacks=[EarlyStopping(monitor="loss", baseline=0.0, patience=2)])

    def stop_on_rank1(epoch: int, logs: Any) -> None:
        if epoch == 1 and distributed.rank() == 1:
            model.stop_training = True

    at_epoch_end = model.fit(x, y, batch_size=8, epochs=6, verbose=0,
                             callbacks=[LambdaCallback(on_epoch_end=stop_on_rank1)])
    batches: list[int] = []

    def stop_mid_epoch(batch: int, logs: Any) -> None:
        batches.append(batch)
        if len(batches) == 6 and distributed.rank() == 1:
            model.stop_training = True

    mid_epoch = model.fit(x, y, batch_size=8, epochs=6, verbose=0,
                          callbacks=[LambdaCallback(on_train_batch_end=stop_mid_epoch)])
    return {"early": early.epoch, "at_epoch_end": at_epoch_end.epoch, "mid_epoch": mid_epoch.epoch,
            "batches": batches}


def files(out: str) -> dict[str, Any]:
    """Checkpoints, a CSV log, epoch lines and `save_weights`: rank 0 writes and prints, the others train."""
    written: list[str] = []
    real_save = model_checkpoint.save_weights

    def recording_save(module: torch.nn.Module, path: str) -> None:
        written.append(os.path.basename(path))
        real_save(module, path)

    model_checkpoint.save_weights = recording_save  # type: ignore[assignment]
    model = mlp_model()
    x, y = data(32, 1)
    folder = os.path.join(out, "files")
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
        if distributed.rank() == 1 and model.history is not None and len(model.history.epoch) == 1:
            os._exit(3)

    model.fit(x, y, batch_size=8, epochs=50, verbose=0, callbacks=[LambdaCallback(on_train_batch_end=crash)])
    return {}


SCENARIOS = {"fit": fit, "stop": stop, "files": files, "die": die}


def run(names: str, out: str) -> dict[str, Any]:
    """Several scenarios in one launch (each torchrun start costs seconds): `fit,stop,files`."""
    return {name: SCENARIOS[name](out) for name in names.split(",")}


def main() -> None:
    scenario, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    distributed.init_process_group(timeout=timedelta(seconds=30))
    result = run(scenario, out)
    torch.save(result, os.path.join(out, f"rank{distributed.rank()}.pt"))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
