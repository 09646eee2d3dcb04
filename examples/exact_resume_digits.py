"""What exact resume makes possible, from Python on scikit-learn's bundled digits: fork a run, roll back a spike,
find where two runs part, and tell two configurations apart beyond seed noise.

    python examples/exact_resume_digits.py [--epochs 6] [--seeds 3] [--out runs-example]

1. A parent run keeps one backup per epoch. A fork from its backup after epoch 2 with nothing changed repeats it
   bit for bit; a fork with a tenth of the learning rate continues its History from there (`History.events`).
2. Adam at a learning rate of 1.0 makes the loss spike: `Rollback` sends the run back to its last good state,
   skips the batch and halves the rate, and records each rollback as an event.
3. `epochal.replay.diverge` replays the parent and the slower fork from that backup and names the first batch
   after which their weights differ, and which module's output differs there (none: it is the update).
4. `epochal.tune.seeds` trains two configurations over several seeds; their comparison says whether one beats
   the other beyond seed noise (Welch's t-test, scipy: `pip install 'epochal[stats]'`).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

import epochal
from epochal.callbacks import BackupAndRestore, EarlyStopping, Rollback
from epochal.replay import diverge
from epochal.training.fork import find_backup

FORK_AT = 2  # epochs of the parent the forks share


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 8x8 digits in one fixed shuffled order, each pixel standardised over the training rows (the first
    80 %: `validation_split=0.2` takes the last), as the command line scales them."""
    pixels, labels = load_digits(return_X_y=True)
    order = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))
    x, y = torch.tensor(pixels, dtype=torch.float32)[order], torch.tensor(labels)[order]
    train = x[: int(len(x) * 0.8)]
    return (x - train.mean(0)) / train.std(0).clamp_min(1e-3), y


def build(seed: int = 0, lr: float = 1e-3, hidden: int = 128) -> epochal.Model:
    """The command line's digits MLP (64 -> hidden -> 64 -> 10, dropout 0.1), its weights drawn from `seed`."""
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 64), nn.ReLU(),
                           nn.Dropout(0.1), nn.Linear(64, 10))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: epochal.optimizers.Adam(params, learning_rate=lr),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def train(model: epochal.Model, epochs: int, callbacks: list[Any], **options: Any) -> epochal.History:
    """One run on the digits: the parent, a fork (`resume_from=`) or a replay, all with the same arguments."""
    x, y = digits()
    torch.manual_seed(1)  # the data order and dropout; a fork takes its parent's generators back instead
    return model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0,
                     callbacks=[EarlyStopping(patience=50), *callbacks], **options)


def forks(folder: Path, epochs: int) -> dict[str, Any]:
    """The parent, a fork that changes nothing and one at a tenth of the rate; which are bit-identical."""
    parent = build()
    train(parent, epochs, [BackupAndRestore(folder, keep=None, delete_checkpoint=False)])
    source = find_backup(folder, FORK_AT)
    same, slower = build(), build(lr=1e-4)
    train(same, epochs, [], resume_from=source)
    history = train(slower, epochs, [], resume_from=source)
    weights = zip(parent.module.state_dict().values(), same.module.state_dict().values())
    return {"identical": all(torch.equal(a, b) for a, b in weights) and same.history.history == parent.history.history,
            "parent": parent.history, "fork": history, "source": source}


def replay(source: str, lr: float, epochs: int) -> Callable[[epochal.callbacks.Callback], Any]:
    """A run as `diverge` takes it: built afresh and continued from `source` with the rate `lr`, `probe` listening."""
    return lambda probe: train(build(lr=lr), epochs, [probe], resume_from=source)


def rollbacks(epochs: int) -> list[dict[str, Any]]:
    """The rollbacks of a run whose loss spikes (Adam at 1.0), as `History.events` records them."""
    history = train(build(lr=1.0), epochs, [Rollback(on=("nan", "spike"), remedy=("lower_lr", "skip"), verbose=0)])
    return [event for event in history.events if event["kind"] == "rollback"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None,
                        help="Where the parent keeps its backups. Defaults to a temporary folder.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        found = forks(Path(args.out or scratch) / "parent-backup", args.epochs)
        print(f"A fork after epoch {FORK_AT} with nothing changed repeats the parent bit for bit: {found['identical']}")
        print(f"The slower fork: {found['fork'].events[0]['changes']}, final val_loss "
              f"{found['fork'].history['val_loss'][-1]:.4f} (parent {found['parent'].history['val_loss'][-1]:.4f})")
        parted = diverge(replay(found["source"], 1e-3, args.epochs), replay(found["source"], 1e-4, args.epochs),
                         forward=True)
        print(f"\nWhere the parent and the slower fork part:\n{parted}\n")
    events = rollbacks(min(args.epochs, 2))
    for event in events:
        print(f"Rollback {event['rollback']}: epoch {event['epoch'] + 1}, batch {event['batch']}, {event['reason']} "
              f"(loss {event['loss']:.4g}); remedy {event.get('remedy')}")
    x, y = digits()
    narrow, wide = (epochal.tune.seeds(lambda seed, hidden=hidden: build(seed, hidden=hidden), x, y, seeds=args.seeds,
                                       epochs=args.epochs, batch_size=32, validation_split=0.2, verbose=0)
                    for hidden in (16, 128))
    verdict = wide.compare(narrow, "val_loss", names=("128 wide", "16 wide"))
    print(f"\nval_loss over {args.seeds} seeds: 16 wide {narrow.estimate()}, 128 wide {wide.estimate()}\n{verdict}")
    return {"identical": found["identical"], "fork": found["fork"], "parent": found["parent"], "parted": parted,
            "rollbacks": events, "verdict": verdict}


if __name__ == "__main__":
    main()
