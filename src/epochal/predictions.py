"""Predictions larger than memory (`Model.predict_to`): safetensors shards written as batches come, plus an
index that commits them, read back shard by shard.

A folder of predictions holds `index.json` and the shards it names, `<run>-<rank>-<k>.safetensors`, each a
block of consecutive samples of every output (tensor `"<i>"` is the i-th output leaf). Every file is
written to a temporary name and renamed (`saving.atomic_write`); the index is written last, so a folder
always describes one complete prediction: a run killed half-way leaves the previous index and its shards
as they were, and the next complete run removes the files no index names. Under torch.distributed each
process writes the shards of its own block of samples and rank 0 writes the index, in sample order.

Each shard carries a checksum of its tensors in its metadata and the index one of its own contents, both
verified on reading, so a damaged, truncated or missing file is refused with its path instead of giving
other values.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import torch

from epochal.data.structure import Tree, concatenate, flatten
from epochal.files.digest import seal_intact, sealed
from epochal.files.temporary import remove_orphans
from epochal.saving import atomic_write, corrupt_message, read_tensors_file, tensors_file

FORMAT = "epochal.predictions"
VERSION = 2  # 2: checksums in the index and in each shard
INDEX = "index.json"
_SHARD = re.compile(r"^[0-9a-f]{8}-\d{3,}-\d{5,}\.safetensors$")  # `<run>-<rank>-<k>`: only these are ever removed


class Sync(Protocol):
    """How the processes agree (`parallel.sync.LocalSync` or `GroupSync`)."""

    @property
    def rank(self) -> int: ...

    def gather(self, value: Any) -> list[Any]: ...

    def main_then_wait(self, write: Callable[[], None]) -> None: ...


class Predictions:
    """A folder written by `Model.predict_to`: `len()` samples; iterating gives each shard's outputs in
    order (one shard in memory at a time); `load()` joins them all.

    Example:
        >>> import tempfile, torch, epochal
        >>> model = epochal.Model(torch.nn.Linear(3, 2), device="cpu")
        >>> predictions = model.predict_to(tempfile.mkdtemp(), torch.ones(10, 3), batch_size=4, verbose=0)
        >>> len(predictions), predictions.load().shape
        (10, torch.Size([10, 2]))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.index = _read_index(self.path)

    def __len__(self) -> int:
        return int(self.index["samples"])

    def __iter__(self) -> Iterator[Tree]:
        for shard in self.index["shards"]:
            tensors = read_tensors_file(os.path.join(self.path, shard["file"]), "a shard written by `predict_to`")
            yield _rebuilt(self.index["structure"], iter(tensors[str(i)] for i in range(len(tensors))))

    def load(self) -> Tree:
        """Every sample's outputs, joined as `predict` returns them."""
        return concatenate(list(self))


def write_predictions(outputs: Iterable[Tree], path: str | os.PathLike[str], *, max_shard_bytes: int, sync: Sync,
                      writes: bool, whole: bool) -> Predictions:
    """Write the batches `outputs` into the folder `path` as shards of at most `max_shard_bytes` (a larger
    batch is a shard alone), commit them with the index, remove older runs' files; every process returns
    once the index is there.

    Args:
        outputs: This process's batches of outputs, in sample order.
        path: The folder (created when missing).
        max_shard_bytes: The size at which a shard is written.
        sync: How the processes agree.
        writes: Whether this process writes its batches (a process whose batches another writes drops them).
        whole: Whether one process's batches are all the samples (else each rank's block, in rank order).
    """
    folder = os.fspath(path)
    os.makedirs(folder, exist_ok=True)
    remove_orphans(folder)  # temporary files of writers that died
    run = sync.gather(secrets.token_hex(4))[0]  # rank 0's: one name for this run's files
    shards, structure = _write_shards(outputs, folder, f"{run}-{sync.rank:03d}", max_shard_bytes, writes)
    parts = sync.gather((shards, structure))
    written = [part for part in parts if part[1] is not None]
    if not written:
        raise ValueError("`x` is empty: it yielded no batch.")
    shards = written[0][0] if whole else [shard for part, _ in written for shard in part]
    index = sealed({"format": FORMAT, "version": VERSION, "samples": sum(shard["samples"] for shard in shards),
                    "structure": written[0][1], "shards": shards})
    sync.main_then_wait(lambda: _commit(folder, index))
    return Predictions(folder)


def _write_shards(outputs: Iterable[Tree], folder: str, prefix: str, max_shard_bytes: int,
                  writes: bool) -> tuple[list[dict[str, Any]], Any]:
    """Each shard's file and sample count, and the outputs' structure (None when there was no batch)."""
    shards: list[dict[str, Any]] = []
    pending: list[Tree] = []
    size, structure = 0, None
    for batch in outputs:
        structure = _structure(batch) if structure is None else structure
        if not writes:
            continue
        pending.append(batch)
        size += sum(leaf.numel() * leaf.element_size() for leaf in flatten(batch))
        if size >= max_shard_bytes:
            shards.append(_write_shard(pending, folder, f"{prefix}-{len(shards):05d}.safetensors"))
            pending, size = [], 0
    if pending:
        shards.append(_write_shard(pending, folder, f"{prefix}-{len(shards):05d}.safetensors"))
    return shards, structure


def _write_shard(batches: list[Tree], folder: str, name: str) -> dict[str, Any]:
    leaves = flatten(concatenate(batches))
    tensors = {str(i): leaf.contiguous() for i, leaf in enumerate(leaves)}
    with atomic_write(os.path.join(folder, name)) as handle:
        handle.write(tensors_file(tensors))
    return {"file": name, "samples": int(leaves[0].shape[0])}


def _read_index(folder: str) -> dict[str, Any]:
    """The folder's index, checked: an epochal predictions index whose checksum matches."""
    path = os.path.join(folder, INDEX)
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{folder!r} holds no predictions: its {INDEX} is missing.") from None
    except ValueError as error:  # not JSON, or not UTF-8
        raise ValueError(f"{path!r} is not a readable index of epochal predictions ({error}).") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{path!r} is not an index of epochal predictions (format {FORMAT!r}, version {VERSION}); "
                         "an older epochal's predictions have no checksums: write them again with `predict_to`.")
    if not seal_intact(index):
        raise ValueError(corrupt_message(path))
    return index


def _commit(folder: str, index: Mapping[str, Any]) -> None:
    """Write the index (the commit), then remove the shards of earlier runs, which no index names now."""
    with atomic_write(os.path.join(folder, INDEX), text=True) as handle:
        handle.write(json.dumps(index, indent=1))
    named = {shard["file"] for shard in index["shards"]}
    for name in os.listdir(folder):
        if _SHARD.match(name) and name not in named:
            os.unlink(os.path.join(folder, name))


def _structure(tree: Tree) -> Any:
    """`tree`'s nesting as JSON: `"tensor"`, `{"tuple": [...]}`, `{"list": [...]}` or `{"dict": [[key, ...]]}`."""
    if isinstance(tree, Mapping):
        return {"dict": [[str(key), _structure(value)] for key, value in tree.items()]}
    if isinstance(tree, (tuple, list)):
        return {type(tree).__name__: [_structure(value) for value in tree]}
    if not isinstance(tree, torch.Tensor):
        raise TypeError(f"`predict_to` writes tensors; the predict step returned a {type(tree).__name__}.")
    return "tensor"


def _rebuilt(structure: Any, leaves: Iterator[torch.Tensor]) -> Tree:
    """The tree `_structure` described, its leaves taken in order from `leaves`."""
    if structure == "tensor":
        return next(leaves)
    if "dict" in structure:
        return {key: _rebuilt(value, leaves) for key, value in structure["dict"]}
    kind = "tuple" if "tuple" in structure else "list"
    parts = [_rebuilt(value, leaves) for value in structure[kind]]
    return tuple(parts) if kind == "tuple" else parts
