"""Interpretation: the maths on small hand-checked predictions, then `model.interpret` reading the
compiled loss (logits, probabilities, binary, regression) and refusing what does not fit."""

import math

import pytest
import torch

import epochal
from epochal.analysis.interpretation import interpret_classification, interpret_regression

pytest.importorskip("torchmetrics")

PROBABILITIES = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
LABELS = torch.tensor([0, 1, 1, 2, 2])


def test_classification_counts_and_scores_match_a_hand_count():
    result = interpret_classification(PROBABILITIES, LABELS, class_names=["a", "b", "c"], top_k=2)
    assert result.confusion_matrix == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert result.accuracy == pytest.approx(3 / 5)
    a, b, c = result.per_class
    assert (a.precision, a.recall, a.support) == (pytest.approx(1 / 2), 1.0, 1)
    assert (b.precision, b.recall, b.f1, b.support) == (pytest.approx(1 / 2), pytest.approx(1 / 2), pytest.approx(1 / 2), 2)
    assert (c.precision, c.recall, c.support) == (1.0, pytest.approx(1 / 2), 2)
    worst = result.top_losses[0]  # sample 4: class c given 0.1
    assert (worst.index, worst.predicted, worst.true, worst.confidence) == (4, "b", "c", pytest.approx(0.7))
    assert worst.loss == pytest.approx(-math.log(0.1))
    assert [t.index for t in result.top_losses] == [4, 2]


def test_the_reliability_bins_add_up_to_torchmetrics_expected_calibration_error():
    torch.manual_seed(1)
    probabilities = torch.softmax(torch.randn(200, 4) * 2, dim=1)
    labels = torch.randint(0, 4, (200,))
    result = interpret_classification(probabilities, labels, bins=10)
    assert sum(b.count for b in result.calibration) == 200
    gaps = sum(b.count / 200 * abs(b.accuracy - b.confidence) for b in result.calibration if b.count)
    assert result.ece == pytest.approx(gaps, abs=1e-6)


def test_regression_residuals_are_target_minus_prediction():
    result = interpret_regression(torch.tensor([[1.0], [2.0], [4.0], [3.0]]), torch.tensor([1.0, 3.0, 2.0, 3.0]),
                                  top_k=1)
    r = result.residuals
    assert (r.count, r.mean, r.mae, r.max_abs) == (4, pytest.approx(-0.25), pytest.approx(0.75), 2.0)
    assert r.rmse == pytest.approx(math.sqrt(5 / 4))
    assert result.top_losses[0].index == 2 and result.residual_points[2] == (4.0, -2.0)
    assert "Residuals (target - prediction): mean -0.25" in str(result)


def _classifier(loss, outputs=3):
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Linear(4, outputs), device="cpu")
    model.compile(optimizer="adam", loss=loss)
    return model


def test_model_interpret_reads_logits_from_the_compiled_loss_and_ranks_by_that_loss():
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    loss = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = _classifier(loss)
    result = model.interpret(x, y, class_names=["x", "y", "z"], top_k=3)
    logits = model.predict(x)
    assert result.confusion_matrix == interpret_classification(torch.softmax(logits, 1), y).confusion_matrix
    per_sample = loss.call(y, logits)
    assert [t.loss for t in result.top_losses] == pytest.approx(per_sample.topk(3).values.tolist())
    assert result.loss_name == "sparse_categorical_crossentropy"


def test_model_interpret_reads_a_binary_sigmoid_output():
    x = torch.randn(30, 4)
    model = _classifier(epochal.losses.BinaryCrossentropy(from_logits=True), outputs=1)
    result = model.interpret(x, (x[:, 0] > 0).float(), include=["confusion_matrix"])
    assert len(result.confusion_matrix) == 2 and sum(map(sum, result.confusion_matrix)) == 30
    assert result.per_class is None and result.top_losses == [] and result.calibration is None


def test_model_interpret_on_a_regressor_summarises_its_residuals_and_ranks_by_its_loss():
    x, y = torch.randn(20, 4), torch.randn(20, 1)
    model = _classifier("mae", outputs=1)
    result = model.interpret(x, y, top_k=3)
    residuals = (y - model.predict(x)).reshape(-1)
    assert (result.task, result.loss_name, result.confusion_matrix) == ("regression", "mean_absolute_error", None)
    assert (result.residuals.mean, result.residuals.mae, result.residuals.max_abs) == (
        pytest.approx(residuals.mean().item()), pytest.approx(residuals.abs().mean().item()),
        pytest.approx(residuals.abs().max().item()))
    assert [t.index for t in result.top_losses] == residuals.abs().topk(3).indices.tolist()
    assert [r for _, r in result.residual_points] == pytest.approx(residuals.tolist())


def test_the_regression_figure_plots_residuals_against_predictions_and_their_histogram():
    pytest.importorskip("matplotlib")
    figure = interpret_regression(torch.tensor([1.0, 2.0, 4.0, 3.0]), torch.tensor([1.0, 3.0, 2.0, 3.0])).plot()
    scatter, histogram = figure.axes
    assert (scatter.get_title(), histogram.get_title()) == ("residuals", "residual distribution")
    assert scatter.collections[0].get_offsets().tolist() == [[1.0, 0.0], [2.0, 1.0], [4.0, -2.0], [3.0, 0.0]]
    assert sum(bar.get_height() for bar in histogram.patches) == 4


def test_a_regression_model_asked_for_a_confusion_matrix_is_told_why_not():
    model = _classifier("mse", outputs=1)
    with pytest.raises(ValueError, match=r"`include` asks for 'confusion_matrix', which needs a classification model; "
                                         r"this model is a regression \(its loss is mean_squared_error\). For "
                                         r"regression, `include` may hold: residuals, top_losses."):
        model.interpret(torch.randn(8, 4), torch.randn(8, 1), include=["confusion_matrix"])


def test_other_misuse_is_refused_with_the_argument_named():
    model = epochal.Model(torch.nn.Linear(4, 2), device="cpu")
    with pytest.raises(RuntimeError, match=r"You must call `compile\(\)` before `interpret\(\)`."):
        model.interpret(torch.randn(4, 4), torch.zeros(4))
    model.compile(optimizer="sgd", loss=lambda y_true, y_pred: (y_true - y_pred).abs().mean())
    with pytest.raises(ValueError, match="Cannot tell from the loss `.*` whether the model classifies or regresses: "
                                         "pass task='classification' or task='regression'."):
        model.interpret(torch.randn(4, 4), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="`include` may hold calibration, confusion_matrix, per_class, residuals, "
                                         r"top_losses. Received: include=\['roc'\]"):
        model.interpret(torch.randn(4, 4), torch.zeros(4, 2), task="regression", include=["roc"])
    with pytest.raises(ValueError, match="`top_k` must be a positive integer. Received: top_k=0"):
        model.interpret(torch.randn(4, 4), torch.zeros(4, 2), task="regression", top_k=0)


def test_the_figure_has_the_confusion_matrix_and_the_reliability_diagram():
    pytest.importorskip("matplotlib")
    figure = interpret_classification(PROBABILITIES, LABELS).plot()
    # one sample per bin: |1-.9|, |1-.6|, |0-.5|, |1-.8|, |0-.7| -> ECE = 1.9 / 5
    assert [axis.get_title() for axis in figure.axes] == ["confusion matrix", "reliability (ECE 0.380)"]
