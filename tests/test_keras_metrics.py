"""Metrics give Keras 3's numbers: by name in `fit`, as objects with Keras's arguments, and weighted.

The expected values were computed with Keras itself by `keras_reference/issue18.py` on the same
arrays (`keras_parity.py`); a model that returns fixed rows (`Fixed`) makes the outputs exact.
"""

import numpy as np
import pytest
import torch

import epochal
from epochal import metrics as M
from keras_parity import binary_data, classification_data, regression_data

PROBABILITIES, LABELS, ONE_HOT, WEIGHTS = (torch.from_numpy(np.asarray(a)) for a in classification_data())
BINARY_PROBABILITY, BINARY_TARGET = (torch.from_numpy(a) for a in binary_data())


class Fixed(torch.nn.Module):
    """Returns `outputs[i]` for the input row i of the identity, like the Keras reference's Dense layer."""

    def __init__(self, outputs):
        super().__init__()
        self.kernel = torch.nn.Parameter(outputs.clone())

    def forward(self, x):
        return x @ self.kernel


def fit_fixed(outputs, y, loss, **options):
    model = epochal.Model(Fixed(outputs), device="cpu")
    compile_options = {key: options.pop(key) for key in ("metrics", "weighted_metrics") if key in options}
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss=loss, **compile_options)
    x = torch.eye(len(outputs))
    history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, **options)
    return {key: values[0] for key, values in history.history.items()}


def test_confusion_metrics_by_name_with_one_hot_and_sparse_targets_are_keras_micro_values():
    # Before issue 18 one-hot targets reached torchmetrics as class indices: precision 0.375-like garbage.
    names = ["precision", "recall", "auc", "f1_score"]
    one_hot = fit_fixed(PROBABILITIES, ONE_HOT, "categorical_crossentropy", metrics=names)
    assert one_hot["loss"] == pytest.approx(1.0302345, abs=1e-6)
    assert one_hot["precision"] == pytest.approx(0.5909091, abs=1e-6)
    assert one_hot["recall"] == pytest.approx(0.325, abs=1e-6)
    assert one_hot["auc"] == pytest.approx(0.6684375, abs=1e-6)  # exact (sklearn); Keras's 200 thresholds: 0.66875
    per_class = [0.6666666, 0.4, 0.3333333]  # Keras logs this array as f1_score
    assert [one_hot[f"f1_score_{i}"] for i in range(3)] == pytest.approx(per_class, abs=1e-6)
    assert one_hot["f1_score"] == pytest.approx(np.mean(per_class), abs=1e-6)
    # Keras refuses integer labels here; epochal one-hot encodes them, so both give the same numbers.
    sparse = fit_fixed(PROBABILITIES, LABELS, "sparse_categorical_crossentropy", metrics=names)
    assert sparse == pytest.approx(one_hot, abs=1e-7)


def test_confusion_metrics_by_name_on_a_binary_output():
    logs = fit_fixed(BINARY_PROBABILITY, BINARY_TARGET, "binary_crossentropy",
                     metrics=["precision", "recall", "auc", "f1_score"])
    assert logs["precision"] == pytest.approx(0.4666667, abs=1e-6)
    assert logs["recall"] == pytest.approx(0.3181818, abs=1e-6)
    assert logs["auc"] == pytest.approx(0.5151515, abs=1e-6)  # exact; Keras's 200 thresholds: 0.5138889
    # Keras's arg-max over one column calls every sample positive; by name epochal thresholds at 0.5:
    assert logs["f1_score"] == pytest.approx(0.3783783, abs=1e-6)  # = Keras's F1Score(threshold=0.5)


def _fed_in_three_batches(metric, y_true, y_pred, sample_weight=None):
    y_true, y_pred = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    metric.build(y_true, y_pred)
    for part in np.array_split(np.arange(len(y_true)), 3):
        index = torch.from_numpy(part)
        metric.update_state(y_true[index], y_pred[index], None if sample_weight is None else sample_weight[index])
    return metric.result().tolist()


X, Y, PREDICTIONS = (torch.from_numpy(a) for a in regression_data())


@pytest.mark.parametrize("metric, y_true, y_pred, weighted, expected", [
    (M.AUC(num_thresholds=200), ONE_HOT, PROBABILITIES, False, 0.66875),
    (M.AUC(num_thresholds=200, curve="PR", multi_label=True), ONE_HOT, PROBABILITIES, True, 0.5329346),
    (M.Precision(thresholds=[0.2, 0.5, 0.7]), ONE_HOT, PROBABILITIES, True, [0.3712768, 0.6534191, 1.0]),
    (M.Precision(top_k=2), ONE_HOT, PROBABILITIES, False, 0.3625),
    (M.Recall(class_id=1), ONE_HOT, PROBABILITIES, True, 0.3899949),
    (M.TruePositives(), ONE_HOT, PROBABILITIES, True, 7.7134581),
    (M.FalseNegatives(thresholds=[0.3, 0.6]), ONE_HOT, PROBABILITIES, False, [11.0, 35.0]),
    (M.F1Score(average="macro"), ONE_HOT, PROBABILITIES, True, 0.532679),
    (M.F1Score(average="weighted"), ONE_HOT, PROBABILITIES, False, 0.5166667),
    (M.FBetaScore(average="micro", beta=2.0, threshold=0.4), ONE_HOT, PROBABILITIES, False, 0.4871795),
    (M.MeanIoU(num_classes=3, sparse_y_pred=False), LABELS, PROBABILITIES, False, 0.3166667),
    (M.OneHotIoU(num_classes=3, target_class_ids=[0, 2]), ONE_HOT, PROBABILITIES, False, 0.35),
    (M.RootMeanSquaredError(), Y, PREDICTIONS, True, 0.4945228),
    (M.R2Score(), Y, PREDICTIONS, False, 0.8581361),
    (M.R2Score(class_aggregation="variance_weighted_average"), Y, PREDICTIONS, False, 0.9100127),
], ids=lambda value: type(value).__name__ if isinstance(value, M.Metric) else None)
def test_metric_objects_take_keras_arguments_and_give_keras_values(metric, y_true, y_pred, weighted, expected):
    weights = WEIGHTS[: len(y_true)] if weighted else None
    assert _fed_in_three_batches(metric, y_true, y_pred, weights) == pytest.approx(expected, abs=2e-6)


def test_top_k_categorical_accuracy_takes_k():
    logs = fit_fixed(PROBABILITIES, ONE_HOT, "categorical_crossentropy", metrics=[M.TopKCategoricalAccuracy(k=2)])
    assert logs["top_k_categorical_accuracy"] == pytest.approx(0.725, abs=1e-7)


def test_exact_auc_is_the_area_under_every_threshold_and_ties_count_half():
    auc = M.AUC()  # of the 4 (positive, negative) pairs, 3 are ordered right and one is a tie (0.5, 0.5)
    auc.update_state(torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0.9, 0.5, 0.5, 0.1]))
    assert float(auc.result()) == pytest.approx(3.5 / 4)


def test_weighted_metrics_see_sample_weights_and_the_validation_tail_keeps_its_weights():
    logs = fit_fixed(PROBABILITIES, ONE_HOT, "categorical_crossentropy", metrics=["accuracy", "mse"],
                     weighted_metrics=["accuracy", "mse"], sample_weight=WEIGHTS, validation_split=0.25)
    assert list(logs) == ["loss", "accuracy", "mse", "weighted_accuracy", "weighted_mse", "val_loss", "val_accuracy",
                          "val_mse", "val_weighted_accuracy", "val_weighted_mse"]
    expected = {"loss": 0.5882818, "accuracy": 0.5, "weighted_accuracy": 0.5463765, "weighted_mse": 0.1953114,
                "val_loss": 0.4422217, "val_weighted_accuracy": 0.6064798}
    assert {key: logs[key] for key in expected} == pytest.approx(expected, abs=1e-6)


def test_a_metric_only_in_weighted_metrics_keeps_its_name_and_metric_state_is_per_epoch():
    model = epochal.Model(Fixed(PROBABILITIES), device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss="categorical_crossentropy",
                  weighted_metrics=["true_positives"])
    history = model.fit(torch.eye(40), ONE_HOT, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert history.history["true_positives"] == [13.0, 13.0]  # recall 0.325 of 40 positives, each epoch afresh


def test_weighted_metrics_refuse_torchmetrics_objects():
    torchmetrics = pytest.importorskip("torchmetrics")
    model = epochal.Model(torch.nn.Linear(2, 3), device="cpu")
    with pytest.raises(TypeError, match="`weighted_metrics` cannot hold a torchmetrics Metric"):
        model.compile(loss="mse", weighted_metrics=[torchmetrics.Accuracy(task="multiclass", num_classes=3)])


@pytest.mark.parametrize("make, message", [
    (lambda: M.AUC(curve="ROCK"), r"`curve` must be one of \['ROC', 'PR'\]. Received: curve='ROCK'"),
    (lambda: M.AUC(num_thresholds=1), r"`num_thresholds` must be None \(exact\) or an integer > 1"),
    (lambda: M.Precision(thresholds=[0.5, 1.5]), r"`thresholds` must be a number or a list of numbers in \[0, 1\]"),
    (lambda: M.Recall(top_k=0), r"`top_k` must be None or a positive integer. Received: top_k=0"),
    (lambda: M.F1Score(average="mean"), r"`average` must be one of \[None, 'micro', 'macro', 'weighted'\]"),
    (lambda: M.IoU(3, [3]), r"`target_class_ids` must be class ids in \[0, 3\)"),
    (lambda: M.R2Score(class_aggregation="max"), r"`class_aggregation` must be one of"),
])
def test_bad_metric_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_metric_state_survives_state_dict_and_a_metric_without_data_says_so():
    first, second = M.AUC(), M.AUC()
    first.update_state(torch.tensor([1.0, 0.0]), torch.tensor([0.8, 0.3]))
    second.load_state_dict(first.state_dict())
    second.update_state(torch.tensor([1.0, 0.0]), torch.tensor([0.2, 0.6]))
    first.update_state(torch.tensor([1.0, 0.0]), torch.tensor([0.2, 0.6]))
    assert float(second.result()) == float(first.result())
    with pytest.raises(RuntimeError, match="`precision` has no data yet"):
        M.Precision().result()
