"""Keras's focal losses and `reduction=` give Keras 3's numbers (`keras_reference/issue18.py`)."""

import numpy as np
import pytest
import torch

import epochal
from epochal import losses
from keras_parity import binary_data, classification_data

PROBABILITIES, LABELS, ONE_HOT, WEIGHTS = (torch.from_numpy(np.asarray(a)) for a in classification_data())
BINARY_PROBABILITY, BINARY_TARGET = (torch.from_numpy(a) for a in binary_data())


@pytest.mark.parametrize("loss, y_true, y_pred, weighted, expected", [
    (losses.get("binary_focal_crossentropy"), BINARY_TARGET, BINARY_PROBABILITY, False, 0.5479324),
    (losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3, gamma=1.5, label_smoothing=0.1),
     BINARY_TARGET, BINARY_PROBABILITY, True, 0.1338799),
    (losses.CategoricalFocalCrossentropy(), ONE_HOT, PROBABILITIES, True, 0.0641829),
    (losses.CategoricalFocalCrossentropy(from_logits=True, gamma=3.0), ONE_HOT, PROBABILITIES.log(), False, 0.096661),
    (losses.MeanSquaredError(reduction="sum"), ONE_HOT, PROBABILITIES, True, 4.399435),
    (losses.MeanSquaredError(reduction="mean_with_sample_weight"), ONE_HOT, PROBABILITIES, True, 0.1961171),
], ids=["binary_focal", "binary_focal_balanced", "categorical_focal", "categorical_focal_logits", "sum",
        "mean_with_sample_weight"])
def test_keras_values(loss, y_true, y_pred, weighted, expected):
    assert float(loss(y_true, y_pred, WEIGHTS if weighted else None)) == pytest.approx(expected, abs=1e-6)


def test_reduction_none_gives_the_weighted_per_sample_values():
    values = losses.MeanSquaredError(reduction="none")(ONE_HOT, PROBABILITIES, WEIGHTS)
    assert values.shape == (40,)
    assert torch.allclose(values, losses.mean_squared_error(ONE_HOT, PROBABILITIES) * WEIGHTS)


@pytest.mark.parametrize("reduction, expected", [("sum", 8.1727591), ("none", 0.5517668)])
def test_a_reduction_in_compile_gives_keras_evaluate_numbers(reduction, expected):
    """Keras's fit averages a `"none"` loss over the batch; `"sum"` sums each batch (and the epoch means them)."""
    model = epochal.Model(torch.nn.Linear(40, 3, bias=False), device="cpu")
    with torch.no_grad():
        model.module.weight.copy_(PROBABILITIES.T)
    model.compile(optimizer="sgd", loss=losses.CategoricalCrossentropy(reduction=reduction))
    result = model.evaluate(torch.eye(40), ONE_HOT, sample_weight=WEIGHTS, batch_size=16, verbose=0)
    assert result["loss"] == pytest.approx(expected, abs=1e-5)


def test_a_bad_reduction_is_named():
    with pytest.raises(ValueError, match=r"`reduction` must be one of \[.*'sum'.*\]. Received: reduction='avg'"):
        losses.Huber(reduction="avg")
