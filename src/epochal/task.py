"""The task compiled into a model: which loss and metrics apply to which output, the total loss a batch
trains on (`loss`, for `Model.compute_loss`), and the log values it reports (`logs`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from epochal import losses as losses_module
from epochal.data.structure import Tree, flatten
from epochal.metrics import check_metric, metric_name, resolve_metric
from epochal.metrics.resolve import Entry


class Task:
    """Losses, loss weights and metrics as compiled, resolved against the outputs on the first batch.

    Log values come in `log_keys()` order: the total loss, then each output's loss (several outputs
    only), then each metric (several values for a per-class one), then each weighted metric
    (compile's `weighted_metrics`, which see the sample weights). `loss` may be None when the model
    computes its loss itself.
    """

    def __init__(self, loss: Any, metrics: Any = None, loss_weights: Any = None, weighted_metrics: Any = None) -> None:
        self._loss_arg = loss
        self._weights_arg = loss_weights
        self._metrics_arg = metrics
        self._weighted_arg = weighted_metrics
        self._check_metrics(metrics)
        self._check_metrics(weighted_metrics, "weighted_metrics")
        self._losses = None if loss is None else self._map_losses(loss)
        self.output_names: list[str] | None = self._names_from_arguments()
        self._metrics: list[list[tuple[Entry, bool]]] | None = None  # per output: (metric, weighted)
        self._checked = False  # the first batch's value checks ran
        self._keys_after_loss: tuple[str, ...] | None = None  # `logs`' names, once built
        #: Checks of the data that need the module's outputs (how many classes a loss reads), run as
        #: `check(outputs, y)` when the next loss is computed, before its backward, then dropped.
        self.output_checks: list[Callable[[Tree, Tree], None]] = []

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def _check_metrics(metrics: Any, name: str = "metrics") -> None:
        if metrics is None:
            return
        groups = metrics.values() if isinstance(metrics, Mapping) else [metrics]
        for group in groups:
            entries = group if isinstance(group, (list, tuple)) else [group]
            for entry in entries:
                for item in entry if isinstance(entry, (list, tuple)) else [entry]:
                    check_metric(item, name)

    @staticmethod
    def _map_losses(loss: Any) -> Any:
        if isinstance(loss, Mapping):
            return {key: losses_module.get(value) for key, value in loss.items()}
        if isinstance(loss, (list, tuple)):
            return [losses_module.get(value) for value in loss]
        return losses_module.get(loss)

    def _names_from_arguments(self) -> list[str] | None:
        if isinstance(self._losses, Mapping):
            return list(self._losses)
        if isinstance(self._losses, list):
            return [f"output_{i + 1}" for i in range(len(self._losses))] if len(self._losses) > 1 else [""]
        return None

    @property
    def has_loss(self) -> bool:
        """Whether `compile` was given a loss (a model overriding `compute_loss` may have none)."""
        return self._losses is not None

    @property
    def built(self) -> bool:
        return self._metrics is not None

    def build(self, outputs: Tree, y: Tree) -> None:
        """Resolve output names and metric variants from the first batch's outputs and targets."""
        names = _output_names(outputs)
        if self.output_names is not None and len(self.output_names) != len(names):
            raise ValueError(
                f"`loss` has {len(self.output_names)} entries but the module returns {len(names)} outputs."
            )
        if isinstance(self._losses, Mapping) and set(self._losses) != set(names):
            raise ValueError(
                f"`loss` keys {sorted(self._losses)} do not match the module's outputs {sorted(names)}."
            )
        self.output_names = names
        out_list, y_list = self.split(outputs, y)
        self._metrics = []
        for name, loss, out, target in zip(names, self._losses_or_none(), out_list, y_list):
            target = target if loss is None else loss.prepare_target(target, out)
            self._metrics.append([
                (resolve_metric(identifier, loss=loss, y_true=target, y_pred=out, weighted=weighted), weighted)
                for weighted, argument in ((False, self._metrics_arg), (True, self._weighted_arg))
                for identifier in self._metric_identifiers(argument, name)
            ])

    def _metric_identifiers(self, metrics: Any, output: str) -> list[Any]:
        if metrics is None:
            return []
        if isinstance(metrics, Mapping):
            chosen = metrics.get(output, [])
            return list(chosen) if isinstance(chosen, (list, tuple)) else [chosen]
        if isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, (list, tuple)) for m in metrics):
            index = (self.output_names or [output]).index(output)
            return list(metrics[index])
        return list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]

    # -- per batch ----------------------------------------------------------------------------

    def losses(self) -> list[Any]:
        names = self.output_names or [""]
        if isinstance(self._losses, Mapping):
            return [self._losses[name] for name in names]
        if isinstance(self._losses, list):
            return self._losses
        return [self._losses] * len(names)

    def loss_weights(self) -> list[float]:
        names = self.output_names or [""]
        weights = self._weights_arg
        if weights is None:
            return [1.0] * len(names)
        if isinstance(weights, Mapping):
            return [float(weights.get(name, 1.0)) for name in names]
        if len(weights) != len(names):
            raise ValueError(f"`loss_weights` has {len(weights)} entries for {len(names)} outputs.")
        return [float(w) for w in weights]

    def split(self, outputs: Tree, y: Tree) -> tuple[list[torch.Tensor], list[Any]]:
        """Outputs and targets as aligned lists, one entry per output."""
        if isinstance(outputs, Mapping):
            out_list = list(outputs.values())
            if isinstance(y, Mapping):
                missing = [key for key in outputs if key not in y]
                if missing:
                    raise ValueError(f"`y` has no entry for the outputs {missing}. Received keys: {list(y)}")
                return out_list, [y[key] for key in outputs]
        elif isinstance(outputs, (tuple, list)):
            out_list = list(outputs)
        else:
            return [outputs], [y]
        y_list = list(y.values()) if isinstance(y, Mapping) else list(y) if isinstance(y, (tuple, list)) else [y]
        if len(y_list) != len(out_list):
            raise ValueError(f"The module returns {len(out_list)} outputs but `y` holds {len(y_list)} targets.")
        return out_list, y_list

    def loss(self, y: Tree, outputs: Tree, sample_weight: torch.Tensor | None) -> torch.Tensor:
        """The batch's total loss for backward: each output's loss, weighted by `loss_weights`, summed.

        The first call resolves the outputs and metrics (`build`) and runs the value checks: the data's
        (`output_checks`: all the targets, or the stream's batch by name) before the batch's own (`check`),
        so a mismatch is an error before the first backward that says where the bad values are.
        """
        if self._losses is None:
            raise ValueError("The default `compute_loss` applies the compiled `loss`, and `compile` got none: pass "
                             "`loss=...` to `compile`, or override `compute_loss` (or `train_step`/`test_step`).")
        if y is None:
            raise ValueError("The compiled loss compares the outputs with targets, and there are none: pass `y` "
                             "(or yield (x, y) batches). Received: y=None")
        if not self.built:
            self.build(outputs, y)
        checks, self.output_checks = self.output_checks, []
        for check in checks:
            check(outputs, y)
        self._prepare(outputs, y)
        output_losses = self._output_losses(y, outputs, sample_weight)
        if len(output_losses) == 1:
            weight = self.loss_weights()[0]
            return output_losses[0] if weight == 1.0 else output_losses[0] * weight
        return sum(w * l for w, l in zip(self.loss_weights(), output_losses))  # type: ignore[return-value]

    def logs(self, y: Tree, outputs: Tree, sample_weight: torch.Tensor | None, *,
             counted: bool = True) -> tuple[tuple[str, ...], torch.Tensor]:
        """The batch's logs besides the total loss: each output's loss (several outputs), then each metric.

        Returns their names and one float tensor of their values, computed without gradients. A batch
        that is not `counted` (a rank's placeholder in a short distributed batch, whose logs weigh
        nothing) leaves the state of the metrics computed over the whole epoch alone, and logs zeros for them.
        """
        if y is None and self._metrics_arg is None and self._weighted_arg is None:
            return (), torch.zeros(0, device=flatten(outputs)[0].device)
        self._prepare(outputs, y)
        out_list, y_list = self.split(outputs, y)
        values: list[torch.Tensor] = []
        with torch.no_grad():
            if len(out_list) > 1 and self._losses is not None:
                values.extend(self._output_losses(y, outputs, sample_weight))
            for loss, metrics, out, target in zip(self._losses_or_none(), self._metrics or [], out_list, y_list):
                target = target if loss is None else loss.prepare_target(target, out)
                values.extend(metric(target, out, sample_weight if weighted else None) if counted or not metric.stateful
                              else torch.zeros(len(metric.suffixes()), device=out.device) for metric, weighted in metrics)
        keys = self._logged_keys()
        if not values:
            return keys, torch.zeros(0, device=flatten(outputs)[0].device)
        return keys, torch.cat([v.float().reshape(-1) for v in values])

    def _logged_keys(self) -> tuple[str, ...]:
        """`log_keys()` after `"loss"`: fixed once built, so computed once (it is asked every batch)."""
        if self._keys_after_loss is None:
            self._keys_after_loss = tuple(self.log_keys()[1:])
        return self._keys_after_loss

    def _output_losses(self, y: Tree, outputs: Tree, sample_weight: torch.Tensor | None) -> list[torch.Tensor]:
        out_list, y_list = self.split(outputs, y)
        result = []
        for loss, out, target in zip(self.losses(), out_list, y_list):
            value = loss(loss.prepare_target(target, out), out, sample_weight)
            result.append(value.mean() if value.ndim else value)  # reduction="none": Keras's fit averages
        return result

    def _prepare(self, outputs: Tree, y: Tree) -> None:
        if not self.built:
            self.build(outputs, y)
        if not self._checked:
            self._checked = True
            self.check(outputs, y)

    def _losses_or_none(self) -> list[Any]:
        return self.losses() if self._losses is not None else [None] * len(self.output_names or [""])

    def check(self, outputs: Tree, y: Tree) -> None:
        """First-batch checks that may read values (probability ranges, label ranges)."""
        if self._losses is None:
            return
        out_list, y_list = self.split(outputs, y)
        for loss, out, target in zip(self.losses(), out_list, y_list):
            loss.check_output(loss.prepare_target(target, out), out)

    # -- keys and epoch results ---------------------------------------------------------------

    def log_keys(self) -> list[str]:
        """`"loss"`, then the names of the values `logs` returns, in order.

        Before the first batch resolves the outputs, the names the compile arguments give (a single
        output unless `loss` is a list or dict; one value per metric)."""
        names = self.output_names or [""]
        multi = len(names) > 1
        keys = ["loss"] + ([f"{name}_loss" for name in names] if multi and self._losses is not None else [])
        for name in names:
            keys.extend(f"{name}_{key}" if multi else key for key, _ in self._metric_keys(name))
        return keys

    def stateful(self) -> list[tuple[list[str], Any]]:
        """(its log names, metric) for every metric computed over the whole epoch (several names for a
        per-class one)."""
        names = self.output_names or [""]
        multi = len(names) > 1
        found: dict[int, tuple[list[str], Any]] = {}
        for name in names:
            for key, metric in self._metric_keys(name):
                if metric is not None and metric.stateful:
                    found.setdefault(id(metric), ([], metric))[0].append(f"{name}_{key}" if multi else key)
        return list(found.values())

    def _metric_keys(self, output: str) -> list[tuple[str, Any]]:
        """(log name, metric) for each value of `output`'s metrics; the metric is None before `build`."""
        if not self.built:
            return [(metric_name(identifier), None) for argument in (self._metrics_arg, self._weighted_arg)
                    for identifier in self._metric_identifiers(argument, output)]
        index = (self.output_names or [""]).index(output)
        keys: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for metric, weighted in (self._metrics or [])[index]:
            key = metric.name
            if weighted and key in seen:  # Keras's rule: a weighted twin of a metric is `weighted_<name>`
                key = f"weighted_{key}"
            seen.add(key)
            keys.extend((f"{key}{suffix}", metric) for suffix in metric.suffixes())
        return keys

    def reset_stateful(self) -> None:
        for _, metric in self.stateful():
            metric.reset_state()


def _output_names(outputs: Tree) -> list[str]:
    if isinstance(outputs, Mapping):
        return [str(key) for key in outputs]
    if isinstance(outputs, Sequence) and not isinstance(outputs, torch.Tensor):
        return [f"output_{i + 1}" for i in range(len(outputs))] if len(outputs) > 1 else [""]
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(
            f"The module must return a tensor, or a tuple/list/dict of tensors. Received: {type(outputs).__name__}"
        )
    return [""]
