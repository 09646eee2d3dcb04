"""Keras-semantics losses: values, weighting, target shapes, first-batch checks and error messages."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from epochal import losses

ONE_HOT = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
PROBS = torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])


def per_sample(loss, y_true, y_pred):
    """What the engine weights: one value per sample."""
    return loss.call(loss.prepare_target(y_true, y_pred), y_pred)


# --- Values: Keras's documented numbers, then direct formulas ------------------------------------------


def test_keras_documented_values():
    binary_true, binary_pred = torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.tensor([[0.6, 0.4], [0.4, 0.6]])
    torch.testing.assert_close(
        losses.categorical_crossentropy(ONE_HOT, PROBS), torch.tensor([0.0513, 2.3026]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        losses.sparse_categorical_crossentropy(torch.tensor([1, 2]), PROBS),
        torch.tensor([0.0513, 2.3026]),
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(
        losses.binary_crossentropy(binary_true, binary_pred),
        torch.tensor([0.9163, 0.7136]),
        atol=1e-4,
        rtol=0,
    )
    assert float(losses.Huber()(binary_true, binary_pred)) == pytest.approx(0.155)
    assert float(losses.LogCosh()(binary_true, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))) == pytest.approx(
        0.10844, abs=1e-5
    )
    cosine = losses.cosine_similarity(
        torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),
        torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]),
    )
    torch.testing.assert_close(cosine, torch.tensor([0.0, -1.0, 1.0]))  # Keras's sign: -1 is a perfect match


EPS = 1e-7
FORMULAS = {
    "mse": lambda y, p: ((y - p) ** 2).mean(-1),
    "mae": lambda y, p: (y - p).abs().mean(-1),
    "mape": lambda y, p: 100 * ((y - p) / y.abs().clamp_min(EPS)).abs().mean(-1),
    "msle": lambda y, p: ((torch.log(p.clamp_min(EPS) + 1) - torch.log(y.clamp_min(EPS) + 1)) ** 2).mean(-1),
    "huber": lambda y, p: torch.where((p - y).abs() <= 1, 0.5 * (p - y) ** 2, (p - y).abs() - 0.5).mean(-1),
    "log_cosh": lambda y, p: torch.log(torch.cosh(p - y)).mean(-1),
    "poisson": lambda y, p: (p - y * torch.log(p + EPS)).mean(-1),
    "kld": lambda y, p: (y.clamp(EPS, 1) * torch.log(y.clamp(EPS, 1) / p.clamp(EPS, 1))).sum(-1),
    "hinge": lambda y, p: (1 - (2 * y - 1) * p).clamp_min(0).mean(-1),
    "squared_hinge": lambda y, p: (1 - (2 * y - 1) * p).clamp_min(0).square().mean(-1),
    "categorical_hinge": lambda y, p: ((1 - y) * p).amax(-1).sub((y * p).sum(-1)).add(1).clamp_min(0),
}


@pytest.mark.parametrize("name", FORMULAS)
def test_each_loss_matches_its_formula_per_sample(name):
    torch.manual_seed(0)
    y_true = F.one_hot(torch.tensor([0, 2, 1, 2]), 3).double()  # 0/1 targets suit every loss here
    y_pred = torch.rand(4, 3, dtype=torch.float64) + 0.05
    loss = losses.get(name)
    expected = FORMULAS[name](y_true, y_pred)
    torch.testing.assert_close(per_sample(loss, y_true, y_pred), expected)
    torch.testing.assert_close(loss(y_true, y_pred), expected.mean())


def test_hinge_keeps_signed_labels_and_maps_binary_ones():
    y_pred = torch.tensor([[0.3], [-0.2]])
    signed = losses.hinge(torch.tensor([[1.0], [-1.0]]), y_pred)
    torch.testing.assert_close(losses.hinge(torch.tensor([[1.0], [0.0]]), y_pred), signed)
    torch.testing.assert_close(signed, torch.tensor([0.7, 0.8]))


# --- Keras's probability handling ----------------------------------------------------------------------


def test_categorical_probabilities_are_normalised_then_clipped():
    loss = losses.CategoricalCrossentropy()
    torch.testing.assert_close(loss(ONE_HOT, PROBS * 3.0), loss(ONE_HOT, PROBS))  # divided by their sum
    # The true class has probability 0 in row 0: clipped to 1e-7, so the loss is -log(1e-7), not inf.
    zero_for_true_class = losses.categorical_crossentropy(ONE_HOT[:1], torch.tensor([[1.0, 0.0, 0.0]]))
    assert float(zero_for_true_class) == pytest.approx(-math.log(1e-7), rel=1e-5)


def test_binary_probabilities_are_clipped():
    value = losses.binary_crossentropy(torch.tensor([[1.0]]), torch.tensor([[0.0]]))
    assert float(value) == pytest.approx(-math.log(1e-7), rel=1e-4)


def test_from_logits_equals_softmax_or_sigmoid_then_probabilities():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2])
    one_hot = F.one_hot(labels, 4).double()
    torch.testing.assert_close(
        losses.CategoricalCrossentropy(from_logits=True)(one_hot, logits),
        losses.CategoricalCrossentropy()(one_hot, logits.softmax(-1)),
    )
    torch.testing.assert_close(
        losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits),
        losses.SparseCategoricalCrossentropy()(labels, logits.softmax(-1)),
    )
    bits = (torch.rand(5, 4) > 0.5).double()
    torch.testing.assert_close(
        losses.BinaryCrossentropy(from_logits=True)(bits, logits),
        losses.BinaryCrossentropy()(bits, logits.sigmoid()),
    )


def test_label_smoothing_follows_keras():
    smoothed_one_hot = ONE_HOT * 0.9 + 0.1 / 3
    torch.testing.assert_close(
        losses.CategoricalCrossentropy(label_smoothing=0.1)(ONE_HOT, PROBS),
        losses.CategoricalCrossentropy()(smoothed_one_hot, PROBS),
    )
    bits, probs = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.7, 0.2]])
    torch.testing.assert_close(
        losses.BinaryCrossentropy(label_smoothing=0.2)(bits, probs),
        losses.BinaryCrossentropy()(torch.tensor([[0.9, 0.1]]), probs),
    )


# --- Reduction and weighting ---------------------------------------------------------------------------


def test_sample_weight_is_summed_then_divided_by_batch_size():
    y_true, y_pred = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 3.0])
    weighted = losses.MeanSquaredError()(y_true, y_pred, sample_weight=torch.tensor([1.0, 0.0, 2.0]))
    assert float(weighted) == pytest.approx((1 * 1 + 0 * 4 + 2 * 9) / 3)  # not / sum(weights) = 3
    column = losses.MeanSquaredError()(y_true, y_pred, sample_weight=torch.tensor([[1.0], [0.0], [2.0]]))
    assert float(column) == pytest.approx(float(weighted))


def test_non_batch_axes_are_averaged_per_sample():
    torch.manual_seed(0)
    y_pred = torch.randn(2, 5, 3).softmax(-1)  # a sequence of 5 steps, 3 classes
    labels = torch.randint(0, 3, (2, 5))
    per_step = -torch.log(y_pred.gather(-1, labels.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(losses.sparse_categorical_crossentropy(labels, y_pred), per_step.mean(1))


def test_ignore_class_averages_over_valid_positions_like_keras_masking():
    y_pred = torch.tensor([[[0.2, 0.8], [0.6, 0.4]], [[0.5, 0.5], [0.9, 0.1]]])
    labels = torch.tensor([[1, -1], [-1, -1]])  # one valid position in the whole batch
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1)
    assert float(loss(labels, y_pred)) == pytest.approx(-math.log(0.8))
    assert float(loss(torch.full((2, 2), -1), y_pred)) == 0.0


# --- Target shapes -------------------------------------------------------------------------------------


def test_one_dimensional_y_is_read_as_a_column_not_broadcast():
    y_true, y_pred = torch.tensor([1.0, 2.0]), torch.tensor([[1.5], [2.0]])
    assert losses.MeanSquaredError().prepare_target(y_true, y_pred).shape == (2, 1)
    # Broadcasting (2,) against (2, 1) would compare every target with every output and give 0.375.
    assert float(losses.MeanSquaredError()(y_true, y_pred)) == pytest.approx(0.125)


def test_sparse_labels_may_be_a_column_and_become_int64():
    target = losses.SparseCategoricalCrossentropy().prepare_target(torch.tensor([[1.0], [2.0]]), PROBS)
    assert target.dtype == torch.int64 and target.shape == (2,)
    torch.testing.assert_close(
        losses.sparse_categorical_crossentropy(torch.tensor([[1], [2]]), PROBS),
        losses.sparse_categorical_crossentropy(torch.tensor([1, 2]), PROBS),
    )


def test_dense_targets_take_the_outputs_dtype():
    y_true = torch.tensor([[1, 0, 0]])
    assert losses.CategoricalCrossentropy().prepare_target(y_true, PROBS[:1].double()).dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_outputs_are_computed_in_float32(dtype):
    value = losses.BinaryCrossentropy()(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]], dtype=dtype))
    assert value.dtype == torch.float32 and math.isfinite(float(value))  # 1 - 1e-7 would round to 1


# --- Errors --------------------------------------------------------------------------------------------


def test_shape_mismatch_names_y_both_shapes_and_the_expectation():
    with pytest.raises(
        ValueError,
        match=r"`y` has shape \(32, 3\) but the model's output has shape \(32, 5\); "
        r"`categorical_crossentropy` expects `y` of the output's shape \(one-hot\)\.",
    ):
        losses.get("categorical_crossentropy").prepare_target(torch.zeros(32, 3), torch.rand(32, 5))
    with pytest.raises(
        ValueError, match=r"\(4, 2\) .* \(4, 1\); `mean_squared_error` expects `y` of the output's shape"
    ):
        losses.get("mse").prepare_target(torch.zeros(4, 2), torch.zeros(4, 1))


def test_shape_errors_point_to_the_other_crossentropy():
    with pytest.raises(ValueError, match="For integer class labels use `sparse_categorical_crossentropy`"):
        losses.CategoricalCrossentropy().prepare_target(torch.tensor([1, 2]), PROBS)
    with pytest.raises(
        ValueError,
        match=r"expects integer class indices of shape \(2,\) or \(2, 1\)\. "
        "For one-hot `y` use `categorical_crossentropy`",
    ):
        losses.SparseCategoricalCrossentropy().prepare_target(ONE_HOT, PROBS)


def test_output_that_is_not_probabilities_suggests_from_logits():
    with pytest.raises(
        ValueError, match=r"does not look like probabilities.*CategoricalCrossentropy\(from_logits=True\)"
    ):
        losses.CategoricalCrossentropy().check_output(
            ONE_HOT, torch.tensor([[-1.0, 2.0, 0.5], [0.0, 1.0, 3.0]])
        )
    with pytest.raises(
        ValueError, match=r"values in \[0, 1\.5\].*in \[0, 1\].*BinaryCrossentropy\(from_logits=True\)"
    ):
        losses.BinaryCrossentropy().check_output(torch.ones(2, 1), torch.tensor([[0.0], [1.5]]))
    losses.CategoricalCrossentropy(from_logits=True).check_output(ONE_HOT, torch.randn(2, 3))
    losses.CategoricalCrossentropy().check_output(ONE_HOT, PROBS * 4)  # above 1 is fine: Keras normalises


def test_sparse_labels_out_of_range_are_rejected_on_the_first_batch():
    with pytest.raises(
        ValueError, match=r"class indices in \[1, 3\] but the model's output has 3 classes.*\[0, 2\]"
    ):
        losses.SparseCategoricalCrossentropy().check_output(torch.tensor([1, 3]), PROBS)
    losses.SparseCategoricalCrossentropy(ignore_class=255).check_output(torch.tensor([1, 255]), PROBS)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"Unknown loss: 'foo'\. Known losses: 'mean_squared_error', 'mse', .*'poisson'"
    ):
        losses.get("foo")


def test_a_scalar_loss_cannot_be_weighted():
    def batch_mse(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean()

    loss = losses.get(batch_mse)
    y_true, y_pred = torch.zeros(3, 1), torch.ones(3, 1)
    assert loss.name == "batch_mse" and float(loss(y_true, y_pred)) == 1.0
    with pytest.raises(
        ValueError, match="cannot be weighted by sample or class weight; return one value per sample"
    ):
        loss(y_true, y_pred, sample_weight=torch.ones(3))


@pytest.mark.parametrize("bad", [42, None, torch.optim.SGD])
def test_bad_identifiers_are_a_type_error_naming_loss(bad):
    with pytest.raises(TypeError, match=r"`loss` must be a Keras loss name.*Received: loss="):
        losses.get(bad)


def test_sample_weight_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"`sample_weight` has shape \(2,\) .* shape \(3,\)"):
        losses.MeanSquaredError()(torch.zeros(3), torch.ones(3), sample_weight=torch.ones(2))


# --- get() and wrapped losses --------------------------------------------------------------------------


def test_get_resolves_names_instances_and_classes():
    assert isinstance(losses.get("MSE"), losses.MeanSquaredError)
    assert isinstance(losses.get("SparseCategoricalCrossentropy"), losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("bce"), losses.BinaryCrossentropy)
    assert losses.get("huber").name == "huber_loss"
    custom = losses.CategoricalCrossentropy(from_logits=True, name="cce")
    assert losses.get(custom) is custom
    assert isinstance(losses.get(losses.Poisson), losses.Poisson)


def test_torch_cross_entropy_module_gives_per_sample_values():
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3), torch.tensor([[2], [0], [1], [1]])
    module = nn.CrossEntropyLoss()
    loss = losses.get(module)
    assert loss.name == "cross_entropy_loss" and module.reduction == "mean"  # the user's module is untouched
    expected = F.cross_entropy(logits, labels.squeeze(1), reduction="none")
    torch.testing.assert_close(per_sample(loss, labels, logits), expected)
    torch.testing.assert_close(loss(labels, logits), module(logits, labels.squeeze(1)))


def test_torch_cross_entropy_labels_out_of_range_are_rejected_on_the_first_batch():
    loss = losses.get(nn.CrossEntropyLoss(ignore_index=-100))
    loss.check_output(torch.tensor([0, -100]), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\] .* has 3 classes"):
        loss.check_output(torch.tensor([0, 3]), torch.randn(2, 3))


def test_torch_regression_module_is_reduced_per_sample():
    y_true, y_pred = torch.tensor([1.0, 2.0]), torch.tensor([[1.5], [2.0]])
    assert losses.get(nn.MSELoss).name == "mse_loss"
    torch.testing.assert_close(
        per_sample(losses.get(nn.MSELoss()), y_true, y_pred), torch.tensor([0.25, 0.0])
    )


def test_a_per_sample_callable_is_weighted_like_a_keras_loss():
    loss = losses.get(lambda y_true, y_pred: (y_true - y_pred).abs())
    weighted = loss(
        torch.zeros(2, 2), torch.tensor([[1.0, 3.0], [2.0, 2.0]]), sample_weight=torch.tensor([1.0, 0.5])
    )
    assert float(weighted) == pytest.approx((2.0 * 1.0 + 2.0 * 0.5) / 2)


# --- Training-readiness --------------------------------------------------------------------------------

GRADIENT_CASES = [
    (losses.MeanSquaredError(), lambda: torch.rand(4, 3)),
    (losses.Huber(delta=0.5), lambda: torch.rand(4, 3)),
    (losses.CosineSimilarity(), lambda: torch.rand(4, 3)),
    (losses.BinaryCrossentropy(), lambda: torch.rand(4, 3).round()),
    (losses.CategoricalCrossentropy(from_logits=True), lambda: F.one_hot(torch.tensor([0, 1, 2, 1]), 3)),
    (losses.SparseCategoricalCrossentropy(), lambda: torch.tensor([0, 1, 2, 1])),
    (losses.SparseCategoricalCrossentropy(ignore_class=1), lambda: torch.tensor([0, 1, 2, 1])),
    (losses.CategoricalHinge(), lambda: F.one_hot(torch.tensor([0, 1, 2, 1]), 3)),
]


@pytest.mark.parametrize(("loss", "make_target"), GRADIENT_CASES, ids=lambda case: getattr(case, "name", ""))
def test_gradients_flow_and_stay_finite(loss, make_target):
    torch.manual_seed(0)
    y_pred = torch.rand(4, 3, requires_grad=True)
    loss(make_target(), y_pred).backward()
    assert y_pred.grad is not None and torch.isfinite(y_pred.grad).all() and y_pred.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("loss", "make_target"), GRADIENT_CASES[3:7], ids=lambda case: getattr(case, "name", "")
)
def test_losses_trace_as_one_graph(loss, make_target):
    torch._dynamo.reset()
    y_true, y_pred = make_target(), torch.rand(4, 3)
    compiled = torch.compile(lambda t, p: loss(t, p), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(y_true, y_pred), loss(y_true, y_pred))
