"""The task: which loss and metrics apply to which output, and the log keys they produce."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from epochal import losses as losses_module
from epochal.data.structure import Tree
from epochal.metrics import check_metric, resolve_metric
from epochal.metrics.resolve import Entry


class Task:
    """Losses, loss weights and metrics as compiled, resolved against the outputs on the first batch.

    Values are computed as one stacked tensor in `log_keys()` order: the total loss, then each
    output's loss (several outputs only), then each metric (several values for a per-class one),
    then each weighted metric (compile's `weighted_metrics`, which see the sample weights).
    """

    def __init__(self, loss: Any, metrics: Any = None, loss_weights: Any = None, weighted_metrics: Any = None) -> None:
        if loss is None:
            raise ValueError("`loss` is required: pass a loss name, a callable or a torch loss module.")
        self._loss_arg = loss
        self._weights_arg = loss_weights
        self._metrics_arg = metrics
        self._weighted_arg = weighted_metrics
        self._check_metrics(metrics)
        self._check_metrics(weighted_metrics, "weighted_metrics")
        self._losses = self._map_losses(loss)
        self.output_names: list[str] | None = self._names_from_arguments()
        self._metrics: list[list[tuple[Entry, bool]]] | None = None  # per output: (metric, weighted)

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
        for name, loss, out, target in zip(names, self.losses(), out_list, y_list):
            target = loss.prepare_target(target, out)
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

    def compute(
        self, outputs: Tree, y: Tree, sample_weight: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The total loss (for backward) and every log value of this batch, stacked (detached)."""
        out_list, y_list = self.split(outputs, y)
        output_losses = []
        metric_values: list[torch.Tensor] = []
        for loss, metrics, out, target in zip(self.losses(), self._metrics or [], out_list, y_list):
            target = loss.prepare_target(target, out)
            value = loss(target, out, sample_weight)
            output_losses.append(value.mean() if value.ndim else value)  # reduction="none": Keras's fit averages
            detached = out.detach()
            metric_values.extend(metric(target, detached, sample_weight if weighted else None)
                                 for metric, weighted in metrics)
        total = output_losses[0] if len(output_losses) == 1 else sum(
            w * l for w, l in zip(self.loss_weights(), output_losses)
        )
        if len(output_losses) == 1 and self.loss_weights()[0] != 1.0:
            total = total * self.loss_weights()[0]
        shown = [total.detach()] + ([l.detach() for l in output_losses] if len(output_losses) > 1 else [])
        values = torch.cat([v.float().reshape(-1) for v in shown + metric_values])
        return total, values

    def check(self, outputs: Tree, y: Tree) -> None:
        """First-batch checks that may read values (probability ranges, label ranges)."""
        out_list, y_list = self.split(outputs, y)
        for loss, out, target in zip(self.losses(), out_list, y_list):
            loss.check_output(loss.prepare_target(target, out), out)

    # -- keys and epoch results ---------------------------------------------------------------

    def log_keys(self) -> list[str]:
        """Keys of the values `compute` returns, in order."""
        if not self.built:
            raise RuntimeError("The task is resolved on the first batch; no keys before that.")
        names = self.output_names or [""]
        multi = len(names) > 1
        keys = ["loss"] + ([f"{name}_loss" for name in names] if multi else [])
        for name, metrics in zip(names, self._metrics or []):
            seen: set[str] = set()
            for metric, weighted in metrics:
                key = metric.name
                if weighted and key in seen:  # Keras's rule: a weighted twin of a metric is `weighted_<name>`
                    key = f"weighted_{key}"
                seen.add(key)
                keys.extend(f"{name}_{key}{suffix}" if multi else f"{key}{suffix}" for suffix in metric.suffixes())
        return keys

    def stateful(self) -> list[tuple[int, Any]]:
        """(position in the values, metric) for every metric computed over the whole epoch.

        A metric with several values (per class) fills `len(metric.suffixes())` positions from there.
        """
        position = 1 + (len(self.output_names or []) if len(self.output_names or []) > 1 else 0)
        found = []
        for metrics in self._metrics or []:
            for metric, _ in metrics:
                if metric.stateful:
                    found.append((position, metric))
                position += len(metric.suffixes())
        return found

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
