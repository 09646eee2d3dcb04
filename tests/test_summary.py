"""`model.summary()`: Keras's table from one traced batch (torchinfo), which changes nothing in the model."""

import pytest
import torch

import epochal

pytest.importorskip("torchinfo")


def _model():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5),
                                 torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.ReLU()))
    module[1].weight.requires_grad_(False)  # 8 non-trainable parameters
    return epochal.Model(module, device="cpu")


def test_keras_layout_with_shapes_from_one_traced_batch():
    lines = []
    _model().summary(torch.randn(5, 4), print_fn=lines.append)
    assert lines[0].splitlines() == [
        'Model: "Sequential"',
        "┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━┓",
        "┃ Layer (type)    ┃ Output Shape ┃ Param # ┃",
        "┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━┩",
        "│ 0 (Linear)      │ (None, 8)    │      40 │",
        "│ 1 (BatchNorm1d) │ (None, 8)    │      16 │",
        "│ 2 (Dropout)     │ (None, 8)    │       0 │",
        "│ 3 (Sequential)  │ (None, 3)    │      27 │",
        "└─────────────────┴──────────────┴─────────┘",
        " Total params: 83 (332.00 B)",
        " Trainable params: 75 (300.00 B)",
        " Non-trainable params: 8 (32.00 B)",
        " Buffers (e.g. normalisation statistics): 72.00 B",
        " Forward/backward pass size of the traced batch: 760.00 B",
    ]


def test_nested_layers_and_no_batch():
    lines = []
    _model().summary(expand_nested=True, print_fn=lines.append)
    rows = [line for line in lines[0].splitlines() if line.startswith("│")]
    assert [row.split("│")[1].rstrip() for row in rows][-2:] == ["   3.0 (Linear)", "   3.1 (ReLU)"]
    assert all(row.split("│")[2].strip() == "?" for row in rows)  # no batch traced: shapes unknown


def test_tracing_changes_no_weight_buffer_mode_or_random_state():
    model = _model()
    model.module.train()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    x = torch.randn(5, 4)
    rng = torch.get_rng_state()
    model.summary(x, print_fn=lambda text: None)
    assert torch.equal(rng, torch.get_rng_state()) and model.module.training
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


def test_a_batch_the_module_cannot_take_is_named():
    with pytest.raises(ValueError, match=r"`x` could not be traced through the module: .* Pass one batch the "
                                         "module accepts."):
        _model().summary(torch.randn(5, 7))
