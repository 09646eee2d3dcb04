"""Knowledge distillation on scikit-learn's digits: a small student learns from a frozen teacher's soft labels.

    python examples/distillation_digits.py [--epochs 30]

The teacher (a wider MLP) is trained first with a plain `fit`. The student is `Distiller.module`; the
teacher is an attribute of the Distiller, outside the module, so no optimizer sees it and it is run
under `torch.no_grad()`. `compute_loss` mixes the hard-label loss with the KL divergence between the
temperature-softened outputs (Hinton et al.; Keras's distillation example), so `evaluate` reports the
same mixture; the compiled "accuracy" metric is logged as usual.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import epochal


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class Distiller(epochal.Model):
    def __init__(self, student: nn.Module, teacher: nn.Module, *, alpha: float = 0.1, temperature: float = 3.0,
                 **options) -> None:
        super().__init__(student, **options)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.alpha, self.temperature = alpha, temperature

    def compute_loss(self, x, y, y_pred, sample_weight=None):
        hard = super().compute_loss(x, y, y_pred, sample_weight)
        with torch.no_grad():
            soft_targets = F.softmax(self.teacher(x) / self.temperature, dim=1)
        soft = F.kl_div(F.log_softmax(y_pred / self.temperature, dim=1), soft_targets, reduction="batchmean")
        return self.alpha * hard + (1 - self.alpha) * soft * self.temperature**2


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=None, help="use only the first N images")
    args = parser.parse_args(argv)

    digits = load_digits()
    x = torch.tensor(digits.data[: args.samples], dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target[: args.samples])
    cut = int(len(x) * 0.8)
    loss = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)

    torch.manual_seed(0)
    teacher = epochal.Model(mlp(256), device="cpu")
    teacher.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    teacher.fit(x[:cut], y[:cut], epochs=args.epochs, batch_size=32, verbose=0)

    student = Distiller(mlp(16), teacher.module, device="cpu")
    student.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    student.fit(x[:cut], y[:cut], epochs=args.epochs, batch_size=32, validation_split=0.2, verbose=2)
    results = {"teacher accuracy": teacher.evaluate(x[cut:], y[cut:], verbose=0)["accuracy"],
               "student accuracy": student.evaluate(x[cut:], y[cut:], verbose=0)["accuracy"]}
    print(", ".join(f"{name} on held-out digits: {value:.3f}" for name, value in results.items()))
    return results


if __name__ == "__main__":
    main()
