"""Several named validation sets: `validation_data={"clean": (x1, y1), "noisy": (x2, y2)}`, logged as
`val_clean_loss`, `val_noisy_accuracy`, ...; one unnamed set (a tuple or a dataset) keeps plain `val_` keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def split_sets(validation_data: Any) -> dict[str | None, Any]:
    """`{name: data}` for a dict of named sets, `{None: validation_data}` for one set (nothing when None).

    Example:
        >>> split_sets({"clean": (1, 2)}), split_sets((1, 2)), split_sets(None)
        ({'clean': (1, 2)}, {None: (1, 2)}, {})
    """
    if validation_data is None:
        return {}
    if not isinstance(validation_data, Mapping):
        return {None: validation_data}
    if not validation_data:
        raise ValueError("`validation_data` as a dict must name at least one validation set, e.g. "
                         "{'clean': (x_val, y_val)}. Received: an empty dict")
    for name in validation_data:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                "Each name in `validation_data` must be a string of letters, digits, `_`, `.` or `-` (it goes into "
                f"log keys such as `val_<name>_loss`). Received: {name!r}")
    return dict(validation_data)


def log_prefix(name: str | None) -> str:
    """The prefix of a set's log keys: `val_`, or `val_<name>_` for a named set."""
    return "val_" if name is None else f"val_{name}_"


def source_name(name: str | None) -> str:
    """How errors and warnings name a set: `validation_data` or `validation_data['clean']`."""
    return "validation_data" if name is None else f"validation_data[{name!r}]"
