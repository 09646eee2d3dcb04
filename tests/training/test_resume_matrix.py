"""Kill-and-resume is bit-identical under every step option, alone and combined, and under a custom
`train_step` with two optimizers: a run stopped after batch k (a backup written at that batch, as on
SIGTERM) and resumed by a fresh process-like Model ends with exactly the uninterrupted run's weights,
optimizer states and History. Stops fall mid-epoch and mid-accumulation-group."""

import os

import pytest
import torch

import epochal
import epochal.step.compiled
from epochal.callbacks import BackupAndRestore
from epochal.training.preemption import TrainingInterrupted

from interruptions import SigtermAfter

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
# SIGTERM after the `at`-th training batch (never when None): the batch ends, a backup is written. Every run
# has one, so the resumed run's callbacks are the interrupted one's.
StopAfter = SigtermAfter


class TwoOptimizers(epochal.Model):
    def train_step(self, data):
        x, y, _ = data
        loss = LOSS(y, self(x))
        self.backward(loss, optimizer="body")
        self.apply_gradients("body")
        head = LOSS(y, self(x))
        self.backward(head, optimizer="head")
        self.apply_gradients("head")
        return {"loss": loss, "head_loss": head}


def _model(kind, options, optimizer="adam"):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    if kind == "two optimizers":
        model = TwoOptimizers(module, device="cpu")
        model.compile(optimizer={"body": ("adam", module[0]), "head": ("sgd", module[2])}, loss=LOSS, **options)
    else:
        model = epochal.Model(module, device="cpu")
        model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"], **options)
    return model


def _fit(model, folder, stop_at=None):
    generator = torch.Generator().manual_seed(5)
    x, y = torch.randn(44, 4, generator=generator), torch.randint(0, 3, (44,), generator=generator)
    torch.manual_seed(1)
    return model.fit(x, y, epochs=3, batch_size=8, validation_split=0.1, verbose=0,
                     callbacks=[BackupAndRestore(folder), StopAfter(stop_at)])


def _state(model):
    return ({k: v.clone() for k, v in model.module.state_dict().items()},
            {name: opt.state_dict() for name, opt in model.optimizers.items()}, model.history.history)


def _assert_identical(resumed, uninterrupted):
    weights, optimizers, history = _state(resumed)
    expected_weights, expected_optimizers, expected_history = _state(uninterrupted)
    for name, value in expected_weights.items():
        assert torch.equal(weights[name], value), name
    assert optimizers.keys() == expected_optimizers.keys()
    for name, state in expected_optimizers.items():
        for index, tensors in state["state"].items():
            for key, value in tensors.items():
                assert torch.equal(torch.as_tensor(optimizers[name]["state"][index][key]), torch.as_tensor(value))
    assert history == expected_history
    assert resumed.history.validation_steps == uninterrupted.history.validation_steps  # the step count resumes too


MATRIX = [
    ("plain", {}, 7),
    ("accumulation, stopped mid-group", {"gradient_accumulation_steps": 2}, 7),
    ("accumulation, stopped at a group's end", {"gradient_accumulation_steps": 2}, 6),
    ("bf16-mixed", {"precision": "bf16-mixed"}, 7),
    ("16-mixed (loss scaler)", {"precision": "16-mixed"}, 7),
    ("clipnorm", {"clipnorm": 0.05}, 7),
    ("global_clipnorm", {"global_clipnorm": 0.05}, 7),
    ("steps_per_execution", {"steps_per_execution": 2}, 4),
    ("16-mixed, accumulation and clipping, mid-group", {"precision": "16-mixed", "gradient_accumulation_steps": 3,
                                                        "global_clipnorm": 0.1}, 8),
]


@pytest.mark.parametrize("kind", ["default step", "two optimizers"])
@pytest.mark.parametrize("name, options, stop_at", MATRIX, ids=[case[0] for case in MATRIX])
def test_resume_after_a_stop_is_bit_identical(tmp_path, kind, name, options, stop_at):
    uninterrupted = _model(kind, options)
    _fit(uninterrupted, tmp_path / "uninterrupted")
    with pytest.raises(TrainingInterrupted):
        _fit(_model(kind, options), tmp_path / "run", stop_at)
    resumed = _model(kind, options)
    _fit(resumed, tmp_path / "run")
    _assert_identical(resumed, uninterrupted)


@pytest.mark.parametrize("optimizer", ["nadam", "adafactor"])
def test_resume_with_keras_optimizers_that_count_steps_is_bit_identical(tmp_path, optimizer):
    """Their step counts (on the host) and slots — Nadam's moments, Adafactor's factored row and column
    means beside 0-dim placeholders — come back, so the schedules continue at the right step."""
    uninterrupted = _model("default step", {}, optimizer)
    _fit(uninterrupted, tmp_path / "uninterrupted")
    with pytest.raises(TrainingInterrupted):
        _fit(_model("default step", {}, optimizer), tmp_path / "run", 7)
    resumed = _model("default step", {}, optimizer)
    _fit(resumed, tmp_path / "run")
    _assert_identical(resumed, uninterrupted)


@pytest.mark.parametrize("kind", ["default step", "two optimizers"])
def test_resume_of_a_compiled_run_is_bit_identical(tmp_path, monkeypatch, kind):
    """`jit_compile` with `steps_per_execution`: the resumed run compiles again and continues exactly."""
    monkeypatch.setitem(epochal.step.compiled._COMPILE, "backend", "aot_eager")
    torch._dynamo.reset()
    options = {"jit_compile": True, "steps_per_execution": 2, "clipnorm": 0.05}
    uninterrupted = _model(kind, options)
    _fit(uninterrupted, tmp_path / "uninterrupted")
    with pytest.raises(TrainingInterrupted):
        _fit(_model(kind, options), tmp_path / "run", 4)
    resumed = _model(kind, options)
    _fit(resumed, tmp_path / "run")
    _assert_identical(resumed, uninterrupted)
    torch._dynamo.reset()


def test_a_backup_taken_mid_group_holds_the_pending_gradients(tmp_path):
    """Stopped after the first batch of a group of 3: the backup holds that batch's summed gradients."""
    model = _model("default step", {"gradient_accumulation_steps": 3})
    with pytest.raises(TrainingInterrupted):
        _fit(model, tmp_path, 4)
    newest = sorted(p for p in os.listdir(tmp_path) if p.endswith(".pt"))[-1]
    steps = torch.load(tmp_path / newest, weights_only=True)["ranks"][0]["steps"]
    assert steps["pending"] == {"optimizer": 1}
    grads = steps["gradients"]["optimizer"]
    assert len(grads) == 4 and all(g is not None and bool(g.abs().sum() > 0) for g in grads)


def _fit_by_steps(model, folder, stop_at=None):
    """Two named validation sets, a validation every 2 batches, at most 13 of 4 x 5 batches."""
    generator = torch.Generator().manual_seed(5)
    x, y = torch.randn(44, 4, generator=generator), torch.randint(0, 3, (44,), generator=generator)
    torch.manual_seed(1)
    return model.fit(x[:36], y[:36], epochs=4, batch_size=8, verbose=0, validation_every=2, max_steps=13,
                     validation_data={"head": (x[36:40], y[36:40]), "tail": (x[40:], y[40:])},
                     callbacks=[BackupAndRestore(folder), StopAfter(stop_at)])


@pytest.mark.parametrize("stop_at", [4, 10, 12], ids=["pending mid-epoch validation", "pending on an epoch's end",
                                                      "one before max_steps"])
def test_step_based_control_resumes_bit_identically(tmp_path, stop_at):
    """Stopped right after a validation point (the backup holds it pending) or before `max_steps`, the resumed
    run validates at the same steps, stops at the same batch and ends with the same weights and records."""
    uninterrupted = _model("default step", {})
    _fit_by_steps(uninterrupted, tmp_path / "uninterrupted")
    with pytest.raises(TrainingInterrupted):
        _fit_by_steps(_model("default step", {}), tmp_path / "run", stop_at)
    resumed = _model("default step", {})
    _fit_by_steps(resumed, tmp_path / "run")
    _assert_identical(resumed, uninterrupted)
    assert resumed.history.validation_steps == uninterrupted.history.validation_steps == [2, 4, 5, 6, 8, 10, 12, 13]
    assert resumed.history.validation_history == uninterrupted.history.validation_history
    assert resumed.history.epoch == [0, 1, 2]


def test_a_run_resumes_with_activation_checkpointing_switched_on(tmp_path):
    """Checkpointing changes no result, so it stays out of the run fingerprint: a run stopped (say, out of
    memory) resumes with `checkpoint_modules` and ends exactly where the uninterrupted run does."""
    uninterrupted = _model("default step", {})
    _fit(uninterrupted, tmp_path / "uninterrupted")
    with pytest.raises(TrainingInterrupted):
        _fit(_model("default step", {}), tmp_path / "run", 7)
    resumed = _model("default step", {"checkpoint_modules": ["0", "2"]})
    _fit(resumed, tmp_path / "run")
    _assert_identical(resumed, uninterrupted)
