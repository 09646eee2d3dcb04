"""The arguments Keras's Adam family shares: two decay rates, epsilon and a step count."""

from __future__ import annotations

from typing import Any

from epochal.optimizers.base import KerasOptimizer, Params, checked


class AdaptiveMoments(KerasOptimizer):
    """A Keras optimizer with first- and second-moment decays `beta_1`, `beta_2` in [0, 1), `epsilon`
    and bias corrections that depend on the step (Adam, AdamW, Adamax, Nadam, Lamb)."""

    hyperparameters = ("betas", "epsilon")
    counts_steps = True

    def __init__(self, params: Params, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None, **settings: Any) -> None:
        betas = checked("beta_1", beta_1, 0.0, 1.0, open_high=True), checked("beta_2", beta_2, 0.0, 1.0, open_high=True)
        super().__init__(params, learning_rate, weight_decay, betas=betas, epsilon=checked("epsilon", epsilon), **settings)

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")
