"""`fit` / `evaluate` where Keras 3's numbers differed before issue 18 (`keras_reference/issue18.py`)."""

import numpy as np
import pytest
import torch

import epochal
from keras_parity import classification_data, regression_data

PROBABILITIES, LABELS, ONE_HOT, WEIGHTS = (torch.from_numpy(np.asarray(a)) for a in classification_data())


def fixed_model():
    """Outputs row i of PROBABILITIES for input row i of the identity; learning rate 0: nothing moves."""
    model = epochal.Model(torch.nn.Linear(40, 3, bias=False), device="cpu")
    with torch.no_grad():
        model.module.weight.copy_(PROBABILITIES.T)
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss="sparse_categorical_crossentropy")
    return model


def test_class_weight_without_every_class_weighs_the_missing_ones_1():
    history = fixed_model().fit(torch.eye(40), LABELS, batch_size=16, shuffle=False, verbose=0,
                                class_weight={0: 2.0})  # classes 1 and 2 are present but not named
    assert history.history["loss"] == [pytest.approx(1.4705509, abs=1e-6)]


def test_class_weight_naming_a_huge_class_id_allocates_nothing_for_it():
    """It was a dense table as long as the largest id: 4 TB here, a MemoryError (4 GB took the machine)."""
    history = fixed_model().fit(torch.eye(40), LABELS, batch_size=16, shuffle=False, verbose=0,
                                class_weight={0: 2.0, 10**12: 5.0})
    assert history.history["loss"] == [pytest.approx(1.4705509, abs=1e-6)]  # as {0: 2.0} alone


def test_validation_split_weighs_the_validation_loss_with_the_tail_of_sample_weight():
    model = fixed_model()
    history = model.fit(torch.eye(40), LABELS, batch_size=16, shuffle=False, verbose=0, sample_weight=WEIGHTS,
                        validation_split=0.25)
    assert history.history["val_loss"] == [pytest.approx(0.4422217, abs=1e-6)]
    tail = model.evaluate(torch.eye(40)[30:], LABELS[30:], sample_weight=WEIGHTS[30:], verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(tail["loss"])


def test_steps_per_epoch_continues_where_the_last_epoch_stopped_as_keras():
    """30 samples in batches of 8 are 4 batches; 3 per epoch: epochs take 3, 1 (the data ends), 3, 1, 3."""
    x, y, _ = (torch.from_numpy(a) for a in regression_data())
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight.fill_(0.1)
        module.bias.zero_()
    seen = []
    module.register_forward_hook(lambda m, inputs, output: seen.append(len(inputs[0])) if m.training else None)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.1), loss="mse")
    with pytest.warns(UserWarning, match="an epoch that reaches the end of the data ends there, after 1 batch"):
        history = model.fit(x, y, batch_size=8, epochs=5, steps_per_epoch=3, shuffle=False, verbose=0)
    assert seen == [8, 8, 8, 6, 8, 8, 8, 6, 8, 8, 8]
    assert history.history["loss"] == pytest.approx([1.9172958, 1.7534243, 0.798737, 0.7617412, 0.3463308], abs=2e-6)
    kernel = [0.5427393, -0.1743618, 0.4112812, 1.4514288]  # Keras's (in, out) kernel = our weight transposed
    assert module.weight.detach().T.reshape(-1).tolist() == pytest.approx(kernel, abs=2e-6)


def test_steps_per_epoch_reshuffles_when_a_pass_ends_and_every_row_is_trained_on():
    rows = []
    module = torch.nn.Linear(1, 1)
    module.register_forward_hook(lambda m, inputs, output: rows.extend(inputs[0][:, 0].tolist()) if m.training else None)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    torch.manual_seed(0)
    model.fit(torch.arange(12.0).unsqueeze(1), torch.zeros(12, 1), batch_size=2, epochs=4, steps_per_epoch=3,
              verbose=0)
    first_pass, second_pass = rows[:12], rows[12:]
    assert sorted(first_pass) == sorted(second_pass) == list(range(12))
    assert first_pass != second_pass


def test_evaluate_with_more_steps_than_the_data_holds_warns_and_reports_what_it_ran():
    model = fixed_model()
    with pytest.warns(UserWarning, match=r"`x` ran out of data after 3 batch\(es\), before the 10 asked for"):
        result = model.evaluate(torch.eye(40), LABELS, batch_size=16, steps=10, verbose=0)
    assert result["loss"] == pytest.approx(1.0302345, abs=1e-6)  # Keras: the same, over the 3 batches it had
    stream = [(torch.eye(40)[i:i + 16], LABELS[i:i + 16]) for i in range(0, 40, 16)]
    with pytest.warns(UserWarning, match=r"ran out of data after 3 batch\(es\), before the 10 asked for"):
        assert model.evaluate(stream, steps=10, verbose=0) == result
