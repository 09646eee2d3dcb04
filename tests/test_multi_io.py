"""Several inputs (`module(*x)`, `module(**x)`) and several outputs (tuple/dict) with their own losses."""

import numpy as np
import pytest
import torch

import epochal


class TwoInTwoOut(torch.nn.Module):
    """a, b -> (a + b scaled, a - b scaled): two regression heads with hand-checkable losses."""

    def __init__(self, as_dict=False):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.as_dict = as_dict

    def forward(self, a, b):
        total, diff = (a + b) * self.scale, (a - b) * self.scale
        return {"total": total, "diff": diff} if self.as_dict else (total, diff)


A, B = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [0.0], [1.0]])
Y_TOTAL, Y_DIFF = torch.zeros(3, 1), torch.zeros(3, 1)
MSE_TOTAL = ((A + B) ** 2).mean().item()  # (4 + 4 + 16) / 3 = 8
MSE_DIFF = ((A - B) ** 2).mean().item()   # (0 + 4 + 4) / 3


def frozen(module, **compile_args):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), **compile_args)
    return model


def test_tuple_inputs_and_outputs_with_a_list_of_losses_and_loss_weights():
    model = frozen(TwoInTwoOut(), loss=["mse", "mae"], loss_weights=[2.0, 0.5], metrics=["mse"])
    history = model.fit((A, B), (Y_TOTAL, Y_DIFF), verbose=0)
    mae_diff = (A - B).abs().mean().item()
    assert history.history["loss"] == [pytest.approx(2.0 * MSE_TOTAL + 0.5 * mae_diff)]
    assert history.history["output_1_loss"] == [pytest.approx(MSE_TOTAL)]
    assert history.history["output_2_loss"] == [pytest.approx(mae_diff)]
    assert history.history["output_1_mse"] == [pytest.approx(MSE_TOTAL)]
    assert history.history["output_2_mse"] == [pytest.approx(MSE_DIFF)]


def test_dict_inputs_and_outputs_with_a_dict_of_losses():
    model = frozen(TwoInTwoOut(as_dict=True), loss={"total": "mse", "diff": "mse"},
                   loss_weights={"diff": 3.0}, metrics={"diff": ["mae"]})
    history = model.fit({"a": A.numpy(), "b": B.numpy()}, {"diff": Y_DIFF, "total": Y_TOTAL},
                        validation_data=({"a": A, "b": B}, {"total": Y_TOTAL, "diff": Y_DIFF}), verbose=0)
    assert history.history["loss"] == [pytest.approx(MSE_TOTAL + 3.0 * MSE_DIFF)]
    assert history.history["total_loss"] == [pytest.approx(MSE_TOTAL)]
    assert history.history["diff_mae"] == [pytest.approx((A - B).abs().mean().item())]
    assert history.history["val_diff_loss"] == [pytest.approx(MSE_DIFF)]


def test_a_list_of_arrays_is_several_inputs():
    model = frozen(TwoInTwoOut(), loss=["mse", "mse"])
    history = model.fit([A.numpy(), B.numpy()], [Y_TOTAL.numpy(), Y_DIFF.numpy()], verbose=0)
    assert history.history["loss"] == [pytest.approx(MSE_TOTAL + MSE_DIFF)]


def test_predict_keeps_the_output_structure_in_sample_order():
    model = frozen(TwoInTwoOut(as_dict=True), loss="mse")
    a, b = torch.arange(7.0).unsqueeze(1), torch.zeros(7, 1)
    out = model.predict({"a": a, "b": b}, batch_size=3, verbose=0)
    assert list(out) == ["total", "diff"]
    assert torch.equal(out["total"], a) and torch.equal(out["diff"], a)
    pair = frozen(TwoInTwoOut(), loss="mse").predict((np.arange(5.0, dtype="float32")[:, None], np.zeros((5, 1), "float32")),
                                                   batch_size=2, verbose=0)
    assert isinstance(pair, tuple) and pair[0].flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_loss_list_that_does_not_match_the_outputs_is_an_error():
    model = frozen(TwoInTwoOut(), loss=["mse", "mse", "mse"])
    with pytest.raises(ValueError, match="3 entries but the module returns 2 outputs"):
        model.fit((A, B), (Y_TOTAL, Y_DIFF), verbose=0)
