"""Keras 3's optimizers as `torch.optim.Optimizer`s — their defaults and update formulas, so a Keras
script's `optimizer="adam"` gives Keras's numbers — and the named optimizers of a model.

Each takes the parameters first, then Keras's arguments (`learning_rate=`, ...), and keeps torch's
layout: `param_groups[i]["lr"]` is what schedules set, `state_dict()` saves and loads. Optimizer-level
`weight_decay` is Keras's decoupled form. A `torch.optim` optimizer passed to `compile` keeps torch's numbers.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> optimizer = make_optimizer("RMSprop", net.parameters())
    >>> type(optimizer).__name__, optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["rho"]
    ('RMSprop', 0.001, 0.9)
"""

from epochal.optimizers.adadelta import Adadelta
from epochal.optimizers.adafactor import Adafactor
from epochal.optimizers.adagrad import Adagrad
from epochal.optimizers.adam import Adam, AdamW
from epochal.optimizers.adamax import Adamax
from epochal.optimizers.base import KerasOptimizer
from epochal.optimizers.factory import KNOWN_OPTIMIZERS, check_parameters, make_optimizer, make_optimizers
from epochal.optimizers.ftrl import Ftrl
from epochal.optimizers.lamb import Lamb
from epochal.optimizers.lion import Lion
from epochal.optimizers.nadam import Nadam
from epochal.optimizers.rmsprop import RMSprop
from epochal.optimizers.sgd import SGD

__all__ = [
    "KNOWN_OPTIMIZERS", "SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl",
    "KerasOptimizer", "Lamb", "Lion", "Nadam", "RMSprop", "check_parameters", "make_optimizer", "make_optimizers",
]
