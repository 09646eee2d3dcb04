"""A sharded module's state as files: under FSDP every rank writes its own shards of the weights and of
each optimizer's state with torch.distributed.checkpoint (DCP) into one folder, and reads back its part
of them — on any number of ranks, as DCP reshards on load.

A folder is written atomically: the ranks write into `<folder>.partial`, rank 0 adds `epochal.json`
(what the folder holds and the caller's plain values) once every rank is done, and renames it into
place; a kill at any point leaves the previous folder as it was. Nothing is pickled: DCP stores
tensors and its own metadata, and the JSON holds plain values.

`epochal.json` also holds the SHA-256 of every file DCP wrote, and a checksum of itself: rank 0 hashes
the files once all are written, and every rank checks them all before loading any (all reach the same
verdict, so none is left waiting in DCP's collectives), so a damaged or missing file is refused with
its path instead of loading other values. That costs one more read of the folder per rank on loading.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from epochal.files.digest import file_sha256, seal_intact, sealed
from epochal.files.temporary import temporary_name
from epochal.saving import atomic_write, corrupt_message, some_names

FORMAT = "epochal.shards"
MARKER = "epochal.json"
PARTIAL = ".partial"


class Sync(Protocol):
    """What saving shards asks of the process group (`epochal.parallel.sync.GroupSync` is one)."""

    def main_then_wait(self, write: Callable[[], None]) -> None: ...


def is_shards(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder of shards written by `save_shards`."""
    return os.path.isfile(os.path.join(path, MARKER))


def save_shards(path: str | os.PathLike[str], module: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
                values: Mapping[str, Any], sync: Sync) -> None:
    """Every rank: write its shards of `module` and `optimizers` (and rank 0 the plain `values`) to the
    folder `path`, replacing what was there atomically. Collective: every rank calls it."""
    import torch.distributed.checkpoint as dcp

    path = os.fspath(path)
    partial = path + PARTIAL
    sync.main_then_wait(lambda: shutil.rmtree(partial, ignore_errors=True))  # a killed writer's leftovers
    dcp.save(_state(module, optimizers), checkpoint_id=partial)  # returns once every rank's shards are written

    def commit() -> None:
        files = {name: file_sha256(os.path.join(partial, name)) for name in sorted(os.listdir(partial))}
        marker = sealed({"format": FORMAT, "optimizers": sorted(optimizers), **values, "files": files})
        with atomic_write(os.path.join(partial, MARKER), text=True) as handle:
            handle.write(json.dumps(marker, indent=1))
        _replace_folder(partial, path)

    sync.main_then_wait(commit)


def read_values(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The plain values `save_shards` stored with the shards in `path`, their checksum verified."""
    marker = os.path.join(path, MARKER)
    try:
        with open(marker, encoding="utf-8") as handle:
            values = json.load(handle)
    except ValueError as error:  # not JSON, or not UTF-8
        raise ValueError(f"{marker!r} is not readable ({error}); expected the {MARKER} of a folder of epochal "
                         "shards. Use another copy of the folder.") from None
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a folder of epochal shards (its {MARKER} says otherwise).")
    if "files" not in values:
        raise ValueError(f"{marker!r} lists no checksums of the shards (an older epochal wrote it): save them again.")
    if not seal_intact(values):
        raise ValueError(corrupt_message(marker))
    return values


def check_files(path: str | os.PathLike[str], files: Mapping[str, str]) -> None:
    """A ValueError naming the first of `files` (name: SHA-256) in the folder `path` that is missing or damaged."""
    for name, expected in files.items():
        file = os.path.join(path, name)
        try:
            found = file_sha256(file)
        except FileNotFoundError:
            raise ValueError(f"{file!r} is missing; the shards in {os.fspath(path)!r} are incomplete. Use "
                             "another copy of the folder.") from None
        if found != expected:
            raise ValueError(corrupt_message(file))


def load_shards(path: str | os.PathLike[str], module: torch.nn.Module,
                optimizers: Mapping[str, torch.optim.Optimizer] | None) -> dict[str, Any]:
    """Every rank: load its part of the shards in `path` into `module` (and `optimizers`); returns the plain
    values saved with them. Everything is checked before anything loads. Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    values = read_values(path)
    check_files(path, values["files"])
    check_architecture(path, module)
    optimizers = dict(optimizers or {})
    if optimizers and sorted(optimizers) != values["optimizers"]:
        raise ValueError(f"{os.fspath(path)!r} holds the state of the optimizers {values['optimizers']}, not of "
                         f"{sorted(optimizers)}: load it into a model compiled with the same optimizers.")
    state = _state(module, optimizers)
    dcp.load(state, checkpoint_id=os.fspath(path))
    set_model_state_dict(module, state["module"])
    for name, optimizer in optimizers.items():
        set_optimizer_state_dict(module, optimizer, state["optimizers"][name])
    return values


def check_architecture(path: str | os.PathLike[str], module: torch.nn.Module) -> None:
    """A ValueError naming `path` unless its weights have this module's names and shapes."""
    import torch.distributed.checkpoint as dcp

    saved = {key[len("module."):]: tuple(getattr(meta, "size", ()))
             for key, meta in dcp.FileSystemReader(os.fspath(path)).read_metadata().state_dict_metadata.items()
             if key.startswith("module.")}
    expected = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"Cannot load {os.fspath(path)!r} into this module: the names differ (missing from the shards: "
            f"{some_names(missing)}; unexpected in the shards: {some_names(unexpected)}). They were saved from another model."
        )
    for name, shape in expected.items():
        if saved[name] != shape:
            raise ValueError(f"Cannot load {os.fspath(path)!r} into this module: `{name}` has shape {saved[name]} in "
                             f"the shards but {shape} in the module. They were saved from another model.")


def remove_shards(path: str | os.PathLike[str]) -> None:
    """Delete a shards folder (and its partial twin), its marker first: a half-removed folder is never read."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, MARKER))
    shutil.rmtree(path, ignore_errors=True)
    remove_shards_partial(path)


def remove_shards_partial(path: str | os.PathLike[str]) -> None:
    """Delete what a writer of the shards folder `path` left half-written (when no writer is running)."""
    shutil.rmtree(os.fspath(path) + PARTIAL, ignore_errors=True)


def _state(module: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """This rank's shards as DCP state dicts (names are the parameters', so any number of ranks can read them)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"module": get_model_state_dict(module),
            "optimizers": {name: get_optimizer_state_dict(module, opt) for name, opt in optimizers.items()}}


def _replace_folder(new: str, path: str) -> None:
    """Rename the folder `new` to `path`. An existing `path` is first renamed aside, then removed: a kill in
    between leaves it whole under its hidden temporary name."""
    if os.path.isdir(path):
        aside = temporary_name(path)
        os.replace(path, aside)
        os.replace(new, path)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, path)
    with contextlib.suppress(OSError):  # make the rename durable where folders can be fsynced
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
