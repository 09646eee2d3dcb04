"""Training on a CUDA device: the same results as on the CPU, data moved once, compiled steps and CUDA graphs.

These run only where torch sees a GPU (CI has none; see `benchmarks/gpu_check.sh` for the GPU run).
Tolerance: rtol 1e-4, atol 1e-5 between devices or between CUDA kernels (float32 math in another
order; TF32 stays off for matrix products, torch's default).
"""

import copy
import warnings

import numpy as np
import pytest
import torch

import epochal

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
CLOSE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _fresh_compiler():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def make_data(n=96, features=6, classes=3, seed=0):
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(n, features)).astype(np.float32)
    return x, (x @ generator.normal(size=(features, classes))).argmax(1)


def make_mlp(dropout=0.0):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(16, 3))


def train(module, device, *, epochs=3, batch_size=16, data=None, callbacks=(), optimizer="adam", **options):
    model = epochal.Model(copy.deepcopy(module), device=device)
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"], **options)
    x, y = data if data is not None else make_data()
    torch.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=0.25, verbose=0,
                  callbacks=list(callbacks))
    # Fused Adam warns about nothing; any jit_compile or cuda_graphs warning means a fallback.
    fallbacks = [str(w.message) for w in caught if "jit_compile" in str(w.message) or "cuda_graphs" in str(w.message)]
    assert not fallbacks, fallbacks
    return model


def assert_same_weights(model, reference):
    for ours, theirs in zip(model.module.parameters(), reference.module.parameters()):
        torch.testing.assert_close(ours.detach().cpu(), theirs.detach().cpu(), **CLOSE)


def assert_same_history(model, reference):
    for key, values in reference.history.history.items():
        assert model.history.history[key] == pytest.approx(values, rel=1e-4, abs=1e-5), key


def test_the_default_device_is_the_gpu_and_parameters_live_there():
    model = epochal.Model(make_mlp())
    assert model.device.type == "cuda"
    assert all(p.is_cuda for p in model.module.parameters())


def test_fit_on_the_gpu_matches_the_cpu():
    module = make_mlp()
    on_cpu, on_gpu = train(module, "cpu", optimizer="sgd"), train(module, "cuda", optimizer="sgd")
    assert_same_weights(on_gpu, on_cpu)
    assert_same_history(on_gpu, on_cpu)


def test_arrays_in_memory_are_moved_to_the_gpu_once():
    """Every batch the module sees is a slice of one block already on the GPU, not a fresh copy."""
    storages = set()

    class Spy(torch.nn.Module):
        def forward(self, x):
            assert x.is_cuda
            storages.add(x.untyped_storage().data_ptr())
            return x

    model = epochal.Model(torch.nn.Sequential(Spy(), make_mlp()), device="cuda")
    model.compile(optimizer="sgd", loss=LOSS)
    x, y = make_data()
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, shuffle=False, verbose=0)
    # unshuffled batches are views of the training and validation arrays, each uploaded once
    assert len(storages) <= 2


def test_a_dataloader_on_the_gpu_trains_like_arrays():
    x, y = make_data()
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x[:72]), torch.from_numpy(y[:72]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, pin_memory=True)
    reference = epochal.Model(make_mlp(), device="cuda")
    streamed = epochal.Model(make_mlp(), device="cuda")
    for model in (reference, streamed):
        model.compile(optimizer="sgd", loss=LOSS)
    reference.fit(x[:72], y[:72], batch_size=16, epochs=2, shuffle=False, verbose=0)
    streamed.fit(loader, epochs=2, verbose=0)
    assert_same_weights(streamed, reference)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_compiled_steps_on_the_gpu_match_eager(steps_per_execution):
    module = make_mlp()
    eager = train(module, "cuda")
    compiled = train(module, "cuda", jit_compile=True, steps_per_execution=steps_per_execution)
    assert_same_weights(compiled, eager)
    assert_same_history(compiled, eager)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_cuda_graphs_match_eager(steps_per_execution):
    module = make_mlp()
    eager = train(module, "cuda")
    graphed = train(module, "cuda", jit_compile=True, cuda_graphs=True, steps_per_execution=steps_per_execution)
    assert_same_weights(graphed, eager)
    assert_same_history(graphed, eager)


def test_cuda_graphs_follow_a_learning_rate_schedule():
    """The learning rate is an input copied into the graph before each replay, not a recorded constant."""
    schedule = epochal.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 * 0.5 ** epoch)
    module = make_mlp()
    eager = train(module, "cuda", epochs=4, callbacks=[schedule])
    graphed = train(module, "cuda", epochs=4, callbacks=[copy.deepcopy(schedule)], jit_compile=True,
                    cuda_graphs=True)
    assert_same_weights(graphed, eager)


def test_cuda_graphs_record_again_when_the_optimizer_state_is_replaced():
    """A loaded optimizer state has new tensors: replaying on the old addresses would lose the update."""
    module = make_mlp()
    models = []
    for options in ({}, {"jit_compile": True, "cuda_graphs": True}):
        model = train(module, "cuda", epochs=2, **options)
        model.optimizer.load_state_dict(copy.deepcopy(model.optimizer.state_dict()))
        x, y = make_data(seed=1)
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        models.append(model)
    assert_same_weights(models[1], models[0])


def test_cuda_graph_replays_draw_new_dropout_masks():
    """Identical batches through dropout give different losses step after step, as eager steps do."""
    x = np.repeat(make_data(n=1)[0], 64, axis=0)
    y = np.zeros(64, dtype=np.int64)
    losses = []

    class BatchLosses(epochal.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(logs["loss"])

    model = epochal.Model(make_mlp(dropout=0.5), device="cuda")
    model.compile(optimizer=torch.optim.SGD(model.module.parameters(), lr=0.0), loss=LOSS, jit_compile=True,
                  cuda_graphs=True)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[BatchLosses()])
    assert len(losses) == 16
    assert len({round(loss, 6) for loss in losses[2:]}) > 7  # a fixed mask would repeat one value


def test_a_user_adam_with_step_counts_on_the_cpu_runs_without_graphs_after_one_warning():
    module = make_mlp()
    x, y = make_data()
    model = epochal.Model(copy.deepcopy(module), device="cuda")
    model.compile(optimizer=torch.optim.Adam(model.module.parameters(), lr=1e-3), loss=LOSS, jit_compile=True,
                  cuda_graphs=True)
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="cuda_graphs.*cpu"):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    eager = epochal.Model(copy.deepcopy(module), device="cuda")
    eager.compile(optimizer=torch.optim.Adam(eager.module.parameters(), lr=1e-3), loss=LOSS)
    torch.manual_seed(1)
    eager.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert_same_weights(model, eager)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_on_the_gpu_trains(precision):
    x, y = make_data(n=256)
    model = epochal.Model(make_mlp(), device="cuda")
    model.compile(optimizer="adam", loss=LOSS, precision=precision)
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0).history
    assert all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]


def test_predict_and_evaluate_on_the_gpu_return_values_on_the_cpu():
    x, y = make_data()
    model = train(make_mlp(), "cuda", epochs=1, optimizer="sgd")
    logs = model.evaluate(x, y, verbose=0)
    predictions = model.predict(x, verbose=0)
    assert predictions.device.type == "cpu" and predictions.shape == (len(x), 3)
    model.module.cpu().eval()
    with torch.no_grad():
        on_cpu = model.module(torch.from_numpy(x))
    torch.testing.assert_close(predictions, on_cpu, **CLOSE)
    assert logs["loss"] == pytest.approx(LOSS(torch.from_numpy(y), on_cpu).item(), rel=1e-4)
    assert logs["accuracy"] == pytest.approx((on_cpu.argmax(1).numpy() == y).mean(), abs=1e-6)


def test_weights_saved_on_the_gpu_load_on_the_cpu(tmp_path):
    model = train(make_mlp(), "cuda", epochs=1, optimizer="sgd")
    model.save_weights(tmp_path / "w.safetensors")
    on_cpu = epochal.Model(make_mlp(), device="cpu")
    on_cpu.load_weights(tmp_path / "w.safetensors")
    assert_same_weights(on_cpu, model)
