"""What a resume compares with the run that wrote the backup — the one place that decides.

A resume continues another process's run. It is **refused** when anything differs that would make
the resumed run differ from one never interrupted — the model would silently continue another
experiment — and **forgiven** when nothing that shapes the trajectory differs:

- refused: the module's structure, the optimizers (class and settings), the compile options, the
  data (size, shapes, dtypes, values) and the `fit` arguments in `fingerprint["fit"]`
  (`batch_size`, `steps`, `shuffle`, `initial_epoch`, `validation_freq`, `validation_batch_size`,
  `validation_steps`); and an `epochs` the backup has already trained past;
- forgiven: a larger `epochs` (train further; a smaller one the backup has not passed), the
  callbacks (added, removed or reconfigured: each gets its saved state where it matches, see
  `epochal.training.callback_states`), `verbose`.

A **fork** (`fit(..., resume_from=...)`) continues another run on purpose with settings changed, so it
is let through here too, by `fork_differences`: it may change every `fit` argument (`batch_size`,
`steps_per_epoch` and `shuffle` only where the parent's epoch and pass over the data ended), the
optimizers' settings (learning rate, momentum, weight decay...; not their class or parameters) and the
compile options in `FORK_COMPILE`. The module, the data, the optimizers' kinds and the other compile
options (loss, metrics, precision, accumulation: their state is in the backup) cannot change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: `fit` arguments that never make a resumed run differ from an uninterrupted one (`epochs`: see above).
FORGIVEN = ("epochs",)
#: Compile options a fork may change: none of them has state in a backup.
FORK_COMPILE = ("loss_weights", "jit_compile", "steps_per_execution", "cuda_graphs", "clipnorm", "clipvalue",
                "global_clipnorm")
_BATCHING = ("batch_size", "steps", "shuffle")  # how the data is cut: a fork changes it only between passes
_SHOWN = 6  # differences named in a message, at most
_ABSENT = object()


def differences(saved: Mapping[str, Any], now: Mapping[str, Any], position: Mapping[str, Any]) -> list[str]:
    """What differs between the backup's fingerprint and this run's, in words; empty when resumable.

    Args:
        saved: The fingerprint stored in the backup.
        now: This run's fingerprint.
        position: Where the backup is: `{"epoch", "batch"}`, `batch` batches of `epoch` done.
    """
    fit_before, fit_after = saved.get("fit", {}), now.get("fit", {})
    found = _settings({k: v for k, v in fit_before.items() if k not in FORGIVEN},
                      {k: v for k, v in fit_after.items() if k not in FORGIVEN}, "")
    epochs, (epoch, batch) = fit_after.get("epochs"), (position["epoch"], position["batch"])
    if isinstance(epochs, int) and epochs < epoch + (batch > 0):
        where = f"batch {batch} of epoch {epoch + 1}" if batch else f"the end of epoch {epoch}"
        found.append(f"epochs={epochs} now, but the backup has trained past it (to {where})")
    found += _module(saved.get("module", {}), now.get("module", {}))
    found += _optimizers(saved.get("optimizers", {}), now.get("optimizers", {}))
    found += _settings(saved.get("compile", {}), now.get("compile", {}), "compile option ")
    found += _data(saved.get("data", {}), now.get("data", {}))
    return found


def fork_differences(saved: Mapping[str, Any], now: Mapping[str, Any], position: Mapping[str, Any],
                     inside_pass: bool) -> tuple[list[str], dict[str, list[Any]]]:
    """What a fork may not change (in words; empty when it may start) and what it changes (`name: [old, new]`).

    Args:
        saved: The parent's fingerprint, stored in the backup.
        now: The fork's fingerprint.
        position: Where the backup is: `{"epoch", "batch"}`, `batch` batches of `epoch` done.
        inside_pass: Whether the parent stopped inside a pass over its data (mid-epoch, or between
            epochs with `steps_per_epoch` cutting a pass).
    """
    fit_before, fit_after = saved.get("fit", {}), now.get("fit", {})
    changes = {key: [fit_before.get(key), fit_after.get(key)] for key in _keys(fit_before, fit_after)
               if fit_before.get(key, _ABSENT) != fit_after.get(key, _ABSENT)}
    refused = [f"{key}={_short(old)} in the parent but {_short(new)} now, inside a pass over the data (fork at the "
               "end of an epoch to change it)" for key, (old, new) in changes.items() if inside_pass and key in _BATCHING]
    epochs, epoch = fit_after.get("epochs"), position["epoch"] + (position["batch"] > 0)
    if isinstance(epochs, int) and epochs <= epoch:
        refused.append(f"epochs={epochs} now, but the fork starts after {epoch} epoch(s): give a larger `epochs`")
    refused += _module(saved.get("module", {}), now.get("module", {}))
    refused += _data(saved.get("data", {}), now.get("data", {}))
    before, after = saved.get("optimizers", {}), now.get("optimizers", {})
    refused += _optimizers(_structure(before), _structure(after))
    if not refused:
        changes |= _group_changes(before, after)
    compile_before, compile_after = saved.get("compile", {}), now.get("compile", {})
    for key in _keys(compile_before, compile_after):
        old, new = compile_before.get(key, _ABSENT), compile_after.get(key, _ABSENT)
        if old != new and key in FORK_COMPILE:
            changes[key] = [old, new]
        elif old != new:
            refused.append(f"compile option {key}={_short(old)} in the parent but {_short(new)} now")
    return [item.replace("in the backup", "in the parent") for item in refused], changes


def fork_message(source: str, refused: list[str]) -> str:
    """The refusal of a fork: what cannot change, and what may."""
    shown = "; ".join(refused[:_SHOWN]) + (f"; and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else "")
    return (
        f"Cannot fork {source!r} with these settings: {shown}. A fork may change the `fit` arguments, the "
        "optimizers' settings (learning rate, momentum, weight decay...), clipping and the callbacks; not the "
        "model's architecture, the data, the kind of optimizer, the loss or the metrics. Nothing was loaded "
        "or changed."
    )


def mismatch_message(backup_dir: str, found: list[str]) -> str:
    """The refusal: what differs, and the two ways out."""
    shown = "; ".join(found[:_SHOWN]) + (f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else "")
    return (
        f"The backup in {backup_dir!r} was written by a `fit` with different arguments, model, optimizer or data, "
        f"so resuming it would not continue this run: {shown}. Nothing was loaded or changed. Run the same "
        "command as before to resume; to start this run afresh, give it a new `backup_dir`, or pass "
        "`BackupAndRestore(..., on_mismatch=\"restart\")` to start afresh in this folder (the old backups are "
        "replaced as the new run writes its own)."
    )


def _settings(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str) -> list[str]:
    """`<prefix>key=old in the backup but new now` for each setting that differs."""
    return [f"{prefix}{key}={_short(before.get(key, _ABSENT))} in the backup but {_short(after.get(key, _ABSENT))} now"
            for key in _keys(before, after) if before.get(key, _ABSENT) != after.get(key, _ABSENT)]


def _module(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    def entry(value: Any) -> str:
        return "absent" if value is None else f"{tuple(value[0])} {value[1]}"

    return [f"module entry `{name}`: {entry(before.get(name))} in the backup but {entry(after.get(name))} now"
            for name in _keys(before, after) if before.get(name) != after.get(name)]


def _optimizers(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """How the named optimizers differ (`Model.optimizers`: one is named `optimizer`)."""
    if list(before) != list(after):
        return [f"optimizers {sorted(before)} in the backup but {sorted(after)} now"]
    found = []
    for name, old in before.items():
        new, label = after[name], "optimizer" if len(before) == 1 else f"optimizer {name!r}"
        if old["class"] != new["class"]:
            found.append(f"{label}: {old['class']} in the backup but {new['class']} now")
        elif len(old["groups"]) != len(new["groups"]):
            found.append(f"{label}: {len(old['groups'])} param groups in the backup but {len(new['groups'])} now")
        else:
            for group, (a, b) in enumerate(zip(old["groups"], new["groups"])):
                found += _settings(a, b, f"{label} param group {group}: ")
    return found


def _structure(optimizers: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizers without their settings: class, and how many parameters each group holds."""
    return {name: {"class": record["class"], "groups": [{"params": group["params"]} for group in record["groups"]]}
            for name, record in optimizers.items()}


def changed_settings(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """`(optimizer, group, key)` of each param-group setting that differs between two fingerprints'
    `optimizers` of the same structure (what a fork sets anew after loading the parent's state)."""
    return [(name, group, key) for name, old in before.items()
            for group, (a, b) in enumerate(zip(old["groups"], after[name]["groups"]))
            for key in _keys(a, b) if a.get(key, _ABSENT) != b.get(key, _ABSENT)]


def _group_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """`{"lr": [old, new]}` for each optimizer setting that differs (named by optimizer and group when several)."""
    changes = {}
    for name, group, key in changed_settings(before, after):
        where = ([name] if len(before) > 1 else []) + ([f"group {group}"] if len(before[name]["groups"]) > 1 else [])
        changes[" ".join(where + [key])] = [before[name]["groups"][group].get(key), after[name]["groups"][group].get(key)]
    return changes


def _data(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    found = []
    for name in _keys(before, after):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None or new is None or old.get("kind") != new.get("kind"):
            found.append(f"{name} data: {_kind(old)} in the backup but {_kind(new)} now")
            continue
        if old["kind"] != "arrays":  # its layout by setting; its values by a hash, which says nothing to a reader
            label = f"{name} data ({_kind(new)}): "
            layout_before, layout_after = ({k: v for k, v in record.items() if k != "first"} for record in (old, new))
            found += _settings(layout_before, layout_after, label)
            found += [f"{label}other values (its first samples differ)"] if old.get("first") != new.get("first") else []
            continue
        found += _settings({"samples": old["samples"]}, {"samples": new["samples"]}, f"{name} data: ")
        for part in ("x", "y", "sample_weight"):
            found += _arrays(old.get(part), new.get(part), f"{name} data `{part}`")
    return found


def _arrays(before: Any, after: Any, label: str) -> list[str]:
    """How two `fingerprint._arrays` records differ: their layout, else their values."""
    if before == after:
        return []
    layout = _layout(before), _layout(after)
    if layout[0] != layout[1]:
        return [f"{label}: {layout[0]} in the backup but {layout[1]} now"]
    return [f"{label}: other values (same {layout[1]})"]


def _layout(record: Any) -> Any:
    if isinstance(record, Mapping) and "sha256" in record:
        return f"shape {tuple(record['shape'])} {record['dtype']}"
    if isinstance(record, Mapping):
        return {key: _layout(value) for key, value in record.items()}
    if isinstance(record, list):
        return [_layout(value) for value in record]
    return "none" if record is None else record


def _kind(record: Mapping[str, Any] | None) -> str:
    return "none" if record is None else f"a {record.get('kind')}"


def _keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return list(before) + [key for key in after if key not in before]


def _short(value: Any) -> str:
    text = "absent" if value is _ABSENT else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
