"""Crash-safe files: weights (safetensors) and full training checkpoints, written atomically.

Every file goes through `atomic_write`: it is written under a temporary name in the same folder,
flushed, fsynced and renamed over the target, so a crash mid-write never leaves a truncated file
nor destroys the previous one. The temporary name carries the writer's process id, so the orphan of
a writer killed mid-write is removed at the next start (`epochal.files.temporary.remove_orphans`).

Two formats, neither of which runs pickled code on load, each with a checksum of its contents
(`epochal.files.digest`) verified on load, so a flipped byte is refused with the file's path:

- **Weights** (`save_weights` / `load_weights`): a safetensors file of the module's `state_dict()`
  (parameters and persistent buffers). Tensors tied to each other are stored once and the other
  names are recorded in the file's metadata under `"epochal.aliases"`; the checksum is under
  `"epochal.sha256"`.
- **Checkpoints** (`save_checkpoint` / `load_checkpoint`): one `torch.save` file holding only tensors
  and plain containers (`{"format", "version", "module", "optimizers", "optimizer_classes", "metadata",
  "fingerprint", "checksum"}`, each optimizer by name as in `Model.optimizers`), read back with
  `torch.load(weights_only=True)`. `metadata` carries what resuming needs (the epoch, ...);
  `fingerprint` is the run that wrote it (`epochal.training.fingerprint`), when there was one.
  Version 1 files (one `"optimizer"`, no checksum) still load.

Other tensors epochal writes (`predict_to`'s shards) go through `tensors_file` / `read_tensors_file`: a
safetensors file whose checksum is in its metadata, refused with its path when damaged or missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from epochal.files.digest import digest
from epochal.files.temporary import temporary_name

_ALIASES_KEY = "epochal.aliases"
_CHECKSUM_KEY = "epochal.sha256"
_CHECKPOINT_FORMAT = "epochal.checkpoint"
_CHECKPOINT_VERSION = 2  # 2: named optimizers and their classes, a checksum and the run fingerprint
_CONTENT = ("module", "optimizers", "optimizer_classes", "metadata", "fingerprint")  # what the checksum covers
_ZIP_MAGIC = b"PK\x03\x04"
_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)

PathLike = str | os.PathLike[str]
#: How checked weights go into a module (a sharded module's own way, instead of `load_state_dict`).
LoadState = Callable[[dict[str, torch.Tensor]], None]


@contextlib.contextmanager
def atomic_write(path: PathLike, *, text: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path`, else it is removed.

    Args:
        path: The file to (re)write. Its folder must exist.
        text: Yield a UTF-8 text handle (universal newlines off, as `csv` wants) instead of a binary one.
            Defaults to `False`.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> with atomic_write(target, text=True) as f:
        ...     _ = f.write("hello")
        >>> target.read_text()
        'hello'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    temporary = temporary_name(path)  # names its process, so a dead writer's orphan is removed later
    # O_EXCL so two writers never share a temporary; mode 0o666 lets the umask decide, like open().
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable; folders cannot be opened for this on Windows."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_weights(module: torch.nn.Module, path: PathLike) -> None:
    """Write `module.state_dict()` (parameters and buffers) to a safetensors file, atomically.

    Args:
        module: The module whose weights to save.
        path: Destination file; `.safetensors` is the usual suffix.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> save_weights(torch.nn.Linear(2, 1), path)
        >>> load_weights(torch.nn.Linear(2, 1), path)
    """
    save_state(module.state_dict(), path)


def save_state(state: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Write a module's `state_dict()` to a safetensors file, atomically (`save_weights` of a gathered state)."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen_views: dict[tuple[Any, ...], str] = {}
    seen_storages: set[int] = set()
    for name, tensor in state.items():
        tensor = tensor.detach()
        view = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape,
                tensor.stride(), tensor.dtype)
        if view in seen_views:  # tied weights: one tensor under several names
            aliases[name] = seen_views[view]
            continue
        seen_views[view] = name
        stored = tensor.cpu().contiguous()
        # safetensors refuses tensors that share memory (e.g. two slices of one buffer): copy those.
        storage = stored.untyped_storage().data_ptr()
        if storage in seen_storages and stored.numel() > 0:
            stored = stored.clone()
        seen_storages.add(stored.untyped_storage().data_ptr())
        tensors[name] = stored
    metadata = {_ALIASES_KEY: json.dumps(aliases), _CHECKSUM_KEY: digest([tensors, aliases])}
    data = safetensors_save(tensors, metadata=metadata)
    with atomic_write(path) as handle:
        handle.write(data)


def load_weights(module: torch.nn.Module, path: PathLike, *, load: LoadState | None = None) -> None:
    """Load weights saved by `save_weights` (or the module part of a checkpoint) into `module`.

    Args:
        module: The module to load into; its architecture must match the file's.
        path: A file written by `save_weights` or `save_checkpoint`.
        load: How the checked state goes into the module (a sharded module's own way). Defaults to
            `None`: `module.load_state_dict`.

    Raises:
        ValueError: The file is not a weights file or a checkpoint, it is corrupt (its checksum does
            not match), or it was saved from another architecture; the message names the file and,
            for another architecture, the first parameter whose shape differs (with both shapes) and
            any missing or unexpected names.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(_ZIP_MAGIC):  # a full checkpoint: torch.save writes a zip archive
        state = _read_checkpoint(path)["module"]
    else:
        state = _read_safetensors(data, path)
    _load_module_state(module, state, path, load)


def _read_safetensors(data: bytes, path: PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a `save_weights` file (aliases resolved), after checking its checksum."""
    try:
        state = safetensors_load(data)
        metadata = _safetensors_metadata(data)
        aliases = json.loads(metadata.get(_ALIASES_KEY, "{}"))
        if not isinstance(aliases, dict) or not all(name in state for name in aliases.values()):
            raise ValueError(f"the metadata's {_ALIASES_KEY!r} names tensors the file lacks")
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable weights file ({error}); expected a safetensors file written "
            "by `save_weights` or a checkpoint written by `save_checkpoint`."
        ) from None
    expected = metadata.get(_CHECKSUM_KEY)
    if expected is not None and digest([state, aliases]) != expected:  # files from other tools have none
        raise ValueError(corrupt_message(path))
    for alias, name in aliases.items():
        state[alias] = state[name]
    return state


def tensors_file(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """`tensors` as safetensors bytes with their checksum in the metadata, for `read_tensors_file`."""
    return safetensors_save(dict(tensors), metadata={_CHECKSUM_KEY: digest(dict(tensors))})


def read_tensors_file(path: PathLike, expected: str) -> dict[str, torch.Tensor]:
    """The tensors of a file `tensors_file` wrote, its checksum verified; every error names `path`.

    Args:
        path: The safetensors file.
        expected: What the file should be, for the error messages (e.g. "a shard written by `predict_to`").
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)!r} is missing; expected {expected} there.") from None
    try:
        tensors = safetensors_load(data)
        checksum = _safetensors_metadata(data).get(_CHECKSUM_KEY)
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{os.fspath(path)!r} is not a readable safetensors file ({error}); expected {expected}.") from None
    if digest(tensors) != checksum:
        raise ValueError(corrupt_message(path))
    return tensors


def corrupt_message(path: PathLike) -> str:
    """The refusal of a file whose contents do not match its checksum."""
    return (f"{os.fspath(path)!r} is corrupt: its contents do not match the checksum written with it (a damaged "
            "disk or copy). Use another copy of the file.")


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The metadata of a safetensors header (8-byte little-endian length, then JSON)."""
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    metadata = (header.get("__metadata__") or {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError("its header is not a JSON object with a `__metadata__` object")
    return metadata


def _load_module_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: PathLike,
                       load: LoadState | None = None) -> None:
    expected = module.state_dict()
    for name, tensor in expected.items():
        if name in state and state[name].shape != tensor.shape:
            raise ValueError(
                f"Cannot load {os.fspath(path)!r} into this module: `{name}` has shape "
                f"{tuple(state[name].shape)} in the file but {tuple(tensor.shape)} in the module. "
                "The file was saved from a different architecture."
            )
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing or unexpected:
        raise ValueError(
            f"Cannot load {os.fspath(path)!r} into this module: the names differ "
            f"(missing from the file: {some_names(missing)}; unexpected in the file: {some_names(unexpected)}). "
            "The file was saved from a different architecture."
        )
    if load is None:
        module.load_state_dict(state)
    else:
        load(dict(state))


def some_names(names: list[str], limit: int = 5) -> str:
    """The first `limit` of `names`, quoted, and how many more (for error messages)."""
    shown = ", ".join(f"`{n}`" for n in names[:limit]) or "none"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


Optimizers = torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None


def save_checkpoint(
    path: PathLike,
    module: torch.nn.Module,
    optimizer: Optimizers,
    metadata: Mapping[str, Any] | None = None,
    *,
    fingerprint: Mapping[str, Any] | None = None,
) -> None:
    """Write weights, optimizer state and `metadata` to one file that loads without pickle, atomically.

    Args:
        path: Destination file; `.pt` is the usual suffix.
        module: The module whose `state_dict()` to save.
        optimizer: Its optimizer, or a mapping of named optimizers (`Model.optimizers`), whose state
            (moments, step counts, learning rates) and class are saved too; `None` saves the weights alone.
        metadata: Plain values (str, int, float, bool, None, tensors, and lists/dicts of them) such
            as `{"epoch": 3}`. Defaults to `None` (empty).
        fingerprint: The run that wrote the file (`epochal.training.fingerprint`), as plain values.
            Defaults to `None` (empty).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
        >>> net = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> save_checkpoint(path, net, opt, {"epoch": 4})
        >>> load_checkpoint(path, net, opt)
        {'epoch': 4}
    """
    optimizers = _named(optimizer)
    content = {
        "module": {name: t.detach() for name, t in module.state_dict().items()},
        "optimizers": None if optimizers is None else {name: opt.state_dict() for name, opt in optimizers.items()},
        "optimizer_classes": None if optimizers is None else {name: class_name(opt) for name, opt in optimizers.items()},
        "metadata": dict(metadata or {}),
        "fingerprint": dict(fingerprint or {}),
    }
    for key in ("metadata", "optimizers", "fingerprint"):
        _check_plain(content[key], "optimizer.state_dict()" if key == "optimizers" else key)
    checkpoint = {"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, **content, "checksum": digest(content)}
    with atomic_write(path) as handle:
        torch.save(checkpoint, handle)


def load_checkpoint(path: PathLike, module: torch.nn.Module, optimizer: Optimizers = None, *,
                    load: LoadState | None = None) -> dict[str, Any]:
    """Restore a `save_checkpoint` file into `module` (and `optimizer`); returns its metadata.

    Everything is checked before anything loads: the checksum, the optimizers' names, kinds and
    parameter groups, the architecture.

    Args:
        path: A file written by `save_checkpoint`.
        module: The module to load the weights into.
        optimizer: The optimizer (or mapping of named optimizers, as saved) to load the state into;
            `None` skips it. Defaults to `None`.
        load: How the checked weights go into the module (as in `load_weights`). Defaults to `None`.

    Raises:
        ValueError: The file is not a checkpoint or is corrupt, it holds no state for the optimizers
            given (none, or other names), an optimizer's state is of another kind of optimizer, or it
            was saved from another architecture; the message names the file.
    """
    checkpoint = _read_checkpoint(path)
    optimizers = _named(optimizer)
    saved, classes = checkpoint["optimizers"], checkpoint["optimizer_classes"] or {}
    if optimizers is not None:
        if saved is None:
            raise ValueError(
                f"{os.fspath(path)!r} holds no optimizer state (it was saved with optimizer=None). "
                "Pass optimizer=None to load the weights alone."
            )
        if set(saved) != set(optimizers):
            raise ValueError(f"{os.fspath(path)!r} holds the state of the optimizers {sorted(saved)}, not of "
                             f"{sorted(optimizers)}: load it into a model compiled with the same optimizers.")
        for name, opt in optimizers.items():
            mismatch = optimizer_mismatch(saved[name], classes.get(name), opt)
            if mismatch:
                which = "" if len(optimizers) == 1 else f" {name!r}"
                raise ValueError(f"Cannot load the optimizer state{which} of {os.fspath(path)!r}: {mismatch}. Compile "
                                 "the model with the optimizer it was saved with, or pass optimizer=None to load the "
                                 "weights alone.")
    _load_module_state(module, checkpoint["module"], path, load)
    for name, opt in (optimizers or {}).items():
        opt.load_state_dict(saved[name])
    return dict(checkpoint["metadata"])


def _named(optimizer: Optimizers) -> dict[str, torch.optim.Optimizer] | None:
    """`optimizer` as named optimizers: a single one is named `"optimizer"` (as `Model.optimizers` does)."""
    if optimizer is None:
        return None
    if isinstance(optimizer, torch.optim.Optimizer):
        return {"optimizer": optimizer}
    return dict(optimizer)


def class_name(value: Any) -> str:
    """`module.QualifiedName` of `value`'s class, as stored in files (e.g. `torch.optim.adam.Adam`)."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def optimizer_mismatch(state: Mapping[str, Any], saved_class: str | None,
                       optimizer: torch.optim.Optimizer) -> str | None:
    """Why `optimizer` cannot take `state` (its kind, or its parameter groups differ), or None.

    Loading another optimizer's state "works" in torch and fails later, at the first step (an SGD
    loaded with Adam's state: `KeyError: 'momentum'`), so this is checked before anything loads.
    """
    now = class_name(optimizer)
    if saved_class is not None and saved_class != now:
        return f"it holds the state of a {saved_class} optimizer but the optimizer given is a {now}"
    groups = state.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) and isinstance(g.get("params"), list)
                                               for g in groups):
        return "it holds no parameter groups"
    saved_sizes = [len(group["params"]) for group in groups]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if saved_sizes != sizes:
        return f"it holds parameter groups of {saved_sizes} parameters but the optimizer has groups of {sizes}"
    saved_keys = sorted(set().union(*(set(group) for group in groups)) - {"params"})
    keys = sorted(set().union(*(set(group) for group in optimizer.param_groups)) - {"params"})
    if saved_class is None and saved_keys != keys:  # an older file, without the class: its settings tell
        return f"it holds the settings {saved_keys} but the optimizer given ({now}) has {keys}"
    return None


class PickledPayloadError(ValueError):
    """A file holds a pickled Python object: refused, because unpickling it could run code."""


def load_plain(source: PathLike | IO[bytes], name: str | None = None) -> Any:
    """`torch.load(weights_only=True)` that refuses a pickled Python object with a clear error.

    Args:
        source: A path, or a binary file object.
        name: How to call the file in errors. Defaults to the path.

    Raises:
        PickledPayloadError: The file holds a pickled object (which could run code when loaded).
        ValueError: The file is not a `torch.save` file at all.
    """
    name = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<file>")
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found is None:
            raise ValueError(f"{name!r} is not a readable torch.save file: {str(error).splitlines()[0]}") from None
        raise PickledPayloadError(
            f"Refusing to load {name!r}: it holds a pickled `{found.group(1)}`, which could run code when "
            "loaded. Files written by epochal hold only tensors and plain values."
        ) from None
    except (FileNotFoundError, IsADirectoryError):
        raise  # they name the path already
    except Exception as error:  # noqa: BLE001  # a damaged file fails anywhere in the unpickler, in any way
        raise ValueError(f"{name!r} is not a readable torch.save file ({type(error).__name__}: {error})") from None


def _read_checkpoint(path: PathLike) -> dict[str, Any]:
    """A checkpoint's contents, after checking what it holds and (version 2 on) its checksum."""
    checkpoint = load_plain(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not an epochal checkpoint (written by `save_checkpoint`).")
    if checkpoint.get("version") == 1:  # one unnamed optimizer, no checksum
        single = checkpoint.get("optimizer")
        checkpoint = {**checkpoint, "optimizers": None if single is None else {"optimizer": single},
                      "optimizer_classes": None}
    module, optimizers, metadata = (checkpoint.get(key) for key in ("module", "optimizers", "metadata"))
    if not (isinstance(module, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in module.items())
            and (optimizers is None or isinstance(optimizers, dict) and all(isinstance(v, dict) for v in optimizers.values()))
            and isinstance(metadata, dict)):
        raise ValueError(f"{os.fspath(path)!r} is a damaged epochal checkpoint: it lacks its weights, optimizer "
                         "state or metadata. Use another copy of the file.")
    if checkpoint.get("version") != 1 and digest({key: checkpoint.get(key) for key in _CONTENT}) != checkpoint.get("checksum"):
        raise ValueError(corrupt_message(path))
    return checkpoint


def _check_plain(value: Any, where: str) -> None:
    """Refuse what `torch.load(weights_only=True)` could not read back, before writing anything."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN_TYPES):
        raise TypeError(
            f"`{where}` must hold only tensors, str, int, float, bool, None, lists and dicts, so the "
            f"checkpoint loads without pickle. Received: {type(value).__name__} {value!r}"
        )
