"""Keras 3's numbers for the issue-18 tests, computed with Keras itself (torch backend).

Not part of the suite (Keras is no dependency of epochal). To regenerate the literals:

    pip install keras            # in a separate environment; 3.15.1 gave the numbers in the tests
    KERAS_BACKEND=torch python tests/keras_reference/issue18.py

It prints one `name = value` line per literal; the tests build the same data with `data()` below's
twin (`tests/keras_parity.py`), so both sides see identical arrays.
"""

import os
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from keras_parity import binary_data, classification_data, regression_data  # noqa: E402

M = keras.metrics


def show(name, value):
    value = np.asarray(value, dtype=np.float64)
    text = repr(round(float(value), 7)) if value.ndim == 0 else repr([round(float(v), 7) for v in value])
    print(f"{name} = {text}")


def fixed_model(outputs):
    """A model whose output for sample i (input: row i of the identity) is `outputs[i]`."""
    model = keras.Sequential([keras.Input((len(outputs),)), keras.layers.Dense(outputs.shape[1], use_bias=False)])
    model.layers[0].set_weights([outputs])
    return model


def history_of(outputs, y, loss, metrics=None, weighted_metrics=None, **fit):
    model = fixed_model(outputs)
    model.compile(keras.optimizers.SGD(0.0), loss, metrics=metrics, weighted_metrics=weighted_metrics)
    x = np.eye(len(outputs), dtype="float32")
    return model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, **fit).history


def names_in_fit():
    probabilities, labels, one_hot, weights = classification_data()
    history = history_of(probabilities, one_hot, "categorical_crossentropy", ["precision", "recall", "auc", "f1_score"])
    for key in ("loss", "precision", "recall", "auc"):
        show(f"ONE_HOT_{key.upper()}", history[key][0])
    show("ONE_HOT_F1_PER_CLASS", history["f1_score"][0])
    from sklearn.metrics import roc_auc_score

    show("ONE_HOT_EXACT_AUC", roc_auc_score(one_hot.ravel(), probabilities.ravel()))  # what epochal's "auc" gives
    probability, target = binary_data()
    history = history_of(probability, target, "binary_crossentropy", ["precision", "recall", "auc"])
    for key in ("precision", "recall", "auc"):
        show(f"BINARY_{key.upper()}", history[key][0])
    show("BINARY_EXACT_AUC", roc_auc_score(target.ravel(), probability.ravel()))
    f1 = M.F1Score(threshold=0.5)
    f1.update_state(target, probability)
    show("BINARY_F1_AT_HALF", f1.result()[0])


def metric_objects():
    probabilities, labels, one_hot, weights = classification_data()
    cases = {
        "AUC_PR_MULTI_LABEL": (M.AUC(curve="PR", multi_label=True), one_hot, probabilities, weights),
        "AUC_200_ROC": (M.AUC(), one_hot, probabilities, None),
        "PRECISION_THRESHOLDS": (M.Precision(thresholds=[0.2, 0.5, 0.7]), one_hot, probabilities, weights),
        "PRECISION_TOP_2": (M.Precision(top_k=2), one_hot, probabilities, None),
        "RECALL_CLASS_1": (M.Recall(class_id=1), one_hot, probabilities, weights),
        "TRUE_POSITIVES": (M.TruePositives(), one_hot, probabilities, weights),
        "FALSE_NEGATIVES": (M.FalseNegatives(thresholds=[0.3, 0.6]), one_hot, probabilities, None),
        "F1_MACRO": (M.F1Score(average="macro"), one_hot, probabilities, weights),
        "F1_WEIGHTED": (M.F1Score(average="weighted"), one_hot, probabilities, None),
        "FBETA_2_MICRO": (M.FBetaScore(average="micro", beta=2.0, threshold=0.4), one_hot, probabilities, None),
        "TOP_2_ACCURACY": (M.TopKCategoricalAccuracy(k=2), one_hot, probabilities, None),
        "MEAN_IOU": (M.MeanIoU(num_classes=3, sparse_y_pred=False), labels, probabilities, None),
        "ONE_HOT_IOU": (M.OneHotIoU(num_classes=3, target_class_ids=[0, 2]), one_hot, probabilities, None),
    }
    x, y, predictions = regression_data()
    cases["RMSE"] = (M.RootMeanSquaredError(), y, predictions, weights[: len(y)])
    cases["R2"] = (M.R2Score(), y, predictions, None)
    cases["R2_VARIANCE_WEIGHTED"] = (M.R2Score(class_aggregation="variance_weighted_average"), y, predictions, None)
    for name, (metric, target, output, sample_weight) in cases.items():
        for part in np.array_split(np.arange(len(target)), 3):  # three batches, as the tests feed them
            metric.update_state(target[part], output[part], None if sample_weight is None else sample_weight[part])
        show(name, metric.result())


def weights_in_fit():
    probabilities, labels, one_hot, weights = classification_data()
    history = history_of(probabilities, one_hot, "categorical_crossentropy", ["accuracy", "mse"],
                         ["accuracy", "mse"], sample_weight=weights, validation_split=0.25)
    for key in ("loss", "accuracy", "weighted_accuracy", "weighted_mse", "val_loss", "val_weighted_accuracy"):
        show(f"WEIGHTED_{key.upper()}", history[key][0])
    history = history_of(probabilities, labels, "sparse_categorical_crossentropy", class_weight={0: 2.0})
    show("CLASS_WEIGHT_MISSING_LOSS", history["loss"][0])


def losses():
    probabilities, labels, one_hot, weights = classification_data()
    probability, target = binary_data()
    logits = np.log(probabilities)
    cases = {
        "BINARY_FOCAL": (keras.losses.BinaryFocalCrossentropy(), target, probability, None),
        "BINARY_FOCAL_BALANCED": (keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3, gamma=1.5,
                                                                       label_smoothing=0.1), target, probability, weights),
        "CATEGORICAL_FOCAL": (keras.losses.CategoricalFocalCrossentropy(), one_hot, probabilities, weights),
        "CATEGORICAL_FOCAL_LOGITS": (keras.losses.CategoricalFocalCrossentropy(from_logits=True, gamma=3.0), one_hot,
                                     logits, None),
        "MSE_SUM": (keras.losses.MeanSquaredError(reduction="sum"), one_hot, probabilities, weights),
        "MSE_MEAN_WITH_SAMPLE_WEIGHT": (keras.losses.MeanSquaredError(reduction="mean_with_sample_weight"), one_hot,
                                        probabilities, weights),
    }
    for name, (loss, target_, output, sample_weight) in cases.items():
        show(name, loss(target_, output, sample_weight=sample_weight))
    for reduction in ("sum", "none"):
        model = fixed_model(probabilities)
        model.compile(keras.optimizers.SGD(0.0), keras.losses.CategoricalCrossentropy(reduction=reduction))
        show(f"EVALUATE_REDUCTION_{reduction.upper()}",
             model.evaluate(np.eye(len(probabilities), dtype="float32"), one_hot, sample_weight=weights, batch_size=16,
                            verbose=0))


def early_stopping():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    sequences = {
        "BASELINE_NOT_BEATEN_AT_FIRST": (dict(patience=0, baseline=0.5), [0.6, 0.4, 0.45, 0.5]),
        "BASELINE_NEVER_BEATEN_IMPROVING": (dict(patience=2, baseline=0.0), [5.0, 4.0, 3.0, 2.0, 1.0]),
        "BASELINE_NEVER_BEATEN_PLATEAU": (dict(patience=2, baseline=1.0), [3.0, 2.0, 2.5, 2.4, 2.6, 2.7]),
        "NO_BASELINE": (dict(patience=1), [3.0, 2.0, 2.5, 2.4, 2.6]),
    }
    for name, (options, values) in sequences.items():
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True, **options)
        stopper.set_model(model)
        model.stop_training = False
        stopper.on_train_begin()
        stopped = None
        for epoch, value in enumerate(values):
            stopper.on_epoch_end(epoch, {"val_loss": value})
            if model.stop_training:
                stopped = epoch
                break
        print(f"EARLY_STOPPING_{name} = ({stopped!r}, {stopper.best_epoch!r})  # (stopped epoch, best epoch)")


def steps_per_epoch():
    x, y, _ = regression_data()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(y.shape[1])])
    model.layers[0].set_weights([np.full((x.shape[1], y.shape[1]), 0.1, "float32"), np.zeros(y.shape[1], "float32")])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, batch_size=8, epochs=5, steps_per_epoch=3, shuffle=False, verbose=0)
    show("STEPS_PER_EPOCH_LOSS", history.history["loss"])
    show("STEPS_PER_EPOCH_KERNEL", model.layers[0].get_weights()[0].ravel())


def evaluate_steps():
    probabilities, labels, one_hot, weights = classification_data()
    model = fixed_model(probabilities)
    model.compile(keras.optimizers.SGD(0.0), "categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = model.evaluate(np.eye(len(probabilities), dtype="float32"), one_hot, batch_size=16, steps=10, verbose=0)
    show("EVALUATE_STEPS_BEYOND_DATA_LOSS", loss)
    print(f"# Keras warned: {[str(w.message)[:60] for w in caught]}")


if __name__ == "__main__":
    print(f"# keras {keras.__version__}, backend {keras.backend.backend()}")
    for part in (names_in_fit, metric_objects, weights_in_fit, losses, early_stopping, steps_per_epoch, evaluate_steps):
        print(f"# {part.__name__}")
        part()
