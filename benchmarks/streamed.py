"""W5's input pipeline: arrays memory-mapped from `.npy` files on disk, read by a `torch.utils.data.DataLoader`
with 2 worker processes. Every variant iterates the same kind of loader, so the ratio measures the trainer.

The dataset is indexed by a whole batch of indices at once (a `BatchSampler` as the sampler and
`batch_size=None`, PyTorch's documented way to load batched data): one fancy-indexed read of the
memory map per batch instead of 128 single-row reads and a collate.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

WORKERS = 2


class MemmapRows(Dataset[tuple[np.ndarray, np.ndarray]]):
    """Rows of `x.npy` and `y.npy` in `folder`, opened memory-mapped (once per worker process, lazily)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.length = len(np.load(folder / "y.npy", mmap_mode="r"))
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (np.load(self.folder / "x.npy", mmap_mode="r"), np.load(self.folder / "y.npy", mmap_mode="r"))
        x, y = self._arrays
        index = np.sort(np.asarray(rows))  # sorted reads walk the file forwards; the batch's order does not matter
        return x[index], y[index]


@dataclass
class Loaders:
    """Training and validation DataLoaders over memory-mapped files, and the folder that holds the files."""

    train: DataLoader
    validation: DataLoader
    folder: tempfile.TemporaryDirectory[str]
    samples: int  # training samples per epoch


def _write(folder: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    folder.mkdir()
    np.save(folder / "x.npy", x.numpy())
    np.save(folder / "y.npy", y.numpy())


def memmap_loaders(x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                   batch_size: int) -> Loaders:
    """Write the arrays to a temporary folder and return loaders over them: training shuffled each epoch,
    both with `WORKERS` persistent worker processes."""
    folder = tempfile.TemporaryDirectory(prefix="epochal-w5-")
    root = Path(folder.name)
    _write(root / "train", x, y)
    _write(root / "validation", x_val, y_val)
    train, validation = MemmapRows(root / "train"), MemmapRows(root / "validation")

    def loader(dataset: MemmapRows, sampler: RandomSampler | SequentialSampler) -> DataLoader:
        return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None,
                          num_workers=WORKERS, persistent_workers=True)

    return Loaders(loader(train, RandomSampler(train)), loader(validation, SequentialSampler(validation)), folder,
                   len(train))
