"""Optimizer names -> Keras 3's optimizers (`epochal.optimizers`), and the named optimizers of a model
(one, or several for steps such as a GAN's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from epochal.optimizers.adadelta import Adadelta
from epochal.optimizers.adafactor import Adafactor
from epochal.optimizers.adagrad import Adagrad
from epochal.optimizers.adam import Adam, AdamW
from epochal.optimizers.adamax import Adamax
from epochal.optimizers.base import KerasOptimizer
from epochal.optimizers.ftrl import Ftrl
from epochal.optimizers.lamb import Lamb
from epochal.optimizers.lion import Lion
from epochal.optimizers.nadam import Nadam
from epochal.optimizers.rmsprop import RMSprop
from epochal.optimizers.sgd import SGD

# Keras 3's names (`keras.optimizers.get`), each its optimizer with Keras's defaults.
_OPTIMIZERS: dict[str, Callable[..., KerasOptimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
    "adamax": Adamax, "nadam": Nadam, "lion": Lion, "adafactor": Adafactor, "ftrl": Ftrl, "lamb": Lamb,
}
KNOWN_OPTIMIZERS = tuple(_OPTIMIZERS)


def make_optimizer(identifier: Any, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """An optimizer over `parameters` from a name, an Optimizer instance or a `params -> Optimizer` callable.

    A name (any case) is Keras 3's optimizer of that name with Keras's defaults; an Optimizer, or what a
    callable builds, is used as it is (a `torch.optim` one keeps torch's numbers).
    """
    if isinstance(identifier, torch.optim.Optimizer):
        return identifier
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("The module has no trainable parameters (none with requires_grad=True) to optimize.")
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"Unknown optimizer: {identifier!r}. Known optimizers: {', '.join(KNOWN_OPTIMIZERS)}.")
        return _OPTIMIZERS[key](params)
    if callable(identifier):
        optimizer = identifier(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"A callable `optimizer` must return a torch.optim.Optimizer. Received: {type(optimizer).__name__}"
            )
        return optimizer
    raise TypeError(
        "`optimizer` must be a name, a torch.optim.Optimizer or a callable params -> Optimizer. "
        f"Received: optimizer={identifier!r}"
    )


def make_optimizers(identifier: Any, module: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    """The model's named optimizers: `{"optimizer": ...}` for one, or one per entry of a dict.

    A dict entry is a `torch.optim.Optimizer` built on some of the module's parameters, or a pair
    `(identifier, owner)`: a name or `params -> Optimizer` callable, and the submodule (or parameters)
    it trains. Every optimizer must hold only the module's parameters, and no parameter may belong to
    two of them.
    """
    if not isinstance(identifier, Mapping):
        optimizers = {"optimizer": make_optimizer(identifier, module.parameters())}
    elif not identifier:
        raise ValueError("`optimizer` is an empty dict: give at least one named optimizer.")
    else:
        optimizers = {_checked_name(name): _entry(name, spec) for name, spec in identifier.items()}
    check_parameters(optimizers, module)
    return optimizers


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Optimizer names must be identifiers (they name log keys). Received: {name!r}")
    return name


def _entry(name: str, spec: Any) -> torch.optim.Optimizer:
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        identifier, owner = spec
        parameters = owner.parameters() if isinstance(owner, torch.nn.Module) else owner
        return make_optimizer(identifier, parameters)
    raise TypeError(
        f"`optimizer[{name!r}]` must be a torch.optim.Optimizer, or a pair (name or params -> Optimizer, the "
        f"submodule or parameters it trains). Received: {spec!r}"
    )


def check_parameters(optimizers: Mapping[str, torch.optim.Optimizer], module: torch.nn.Module) -> None:
    """Every optimizer holds only `module`'s parameters, and no parameter belongs to two of them."""
    names = {id(p): name for name, p in module.named_parameters()}
    owner: dict[int, str] = {}
    for key, optimizer in optimizers.items():
        label = "The optimizer" if len(optimizers) == 1 else f"`optimizer[{key!r}]`"
        foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in names]
        if foreign:
            shapes = ", ".join(str(tuple(p.shape)) for p in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ValueError(
                f"{label} holds {len(foreign)} parameter(s) that are not the module's (shapes {shapes}), so "
                "training would not change the module. Build it on this module's parameters, e.g. "
                "`torch.optim.Adam(model.module.parameters())`, or pass a name or a callable params -> Optimizer."
            )
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if id(parameter) in owner and owner[id(parameter)] != key:
                    raise ValueError(f"The parameter `{names[id(parameter)]}` belongs to two optimizers, "
                                     f"{owner[id(parameter)]!r} and {key!r}: give each parameter to one.")
                owner[id(parameter)] = key
