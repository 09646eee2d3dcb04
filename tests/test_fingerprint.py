"""The run fingerprint reads data without changing the run: the same value whenever it is taken, no random
draw consumed, no batch of a one-shot stream lost."""

import torch

from epochal.training.fingerprint import data_fingerprint, describe, module_fingerprint


class _Noisy(torch.utils.data.Dataset):
    """A map-style dataset with random augmentation, as image pipelines have."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return torch.full((2,), float(index)) + torch.rand(2), index % 2


def test_a_shuffled_augmented_loader_has_one_fingerprint_and_the_run_draws_what_it_would():
    loader = torch.utils.data.DataLoader(_Noisy(), batch_size=4, shuffle=True)
    torch.manual_seed(1)
    first = data_fingerprint(loader)
    after = torch.rand(3)
    torch.manual_seed(2)
    assert data_fingerprint(loader) == first, "not the RNG state of the moment"
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after), "taking it drew nothing from the run's generator"
    assert first["samples"] == 10 and first["batch_size"] == 4 and first["sampler"] == "RandomSampler"


def test_a_one_shot_stream_is_not_read():
    stream = iter([(torch.ones(2, 3), torch.ones(2))] * 3)
    assert data_fingerprint(stream) == {"kind": "list_iterator"}
    assert len(list(stream)) == 3


def test_arrays_by_layout_and_values_modules_by_structure():
    class Arrays:  # what an ArrayAdapter exposes
        def __init__(self, x):
            self.x, self.y, self.sample_weight, self.num_samples = x, x[:, 0], None, len(x)

    a, b = data_fingerprint(Arrays(torch.zeros(4, 2))), data_fingerprint(Arrays(torch.ones(4, 2)))
    assert a["x"]["shape"] == [4, 2] and a["x"]["dtype"] == "float32" and a["x"]["sha256"] != b["x"]["sha256"]
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert module_fingerprint(net)["1.running_mean"] == [[4], "float32"]
    assert describe({"loss": "mse", "clip": None, "fn": len}) == {"loss": "mse", "clip": None, "fn": "builtins.len"}
