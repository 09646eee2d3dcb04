"""Seeds as an axis: `epochal.tune.seeds` trains one configuration per seed; `seed_stats` turns the runs into a
mean with its 95% interval and says whether one configuration beats another beyond seed noise."""

import doctest
import math

import pytest
import torch

import epochal
from epochal.analysis import seed_stats
from epochal.tune import seed_runs

scipy_stats = pytest.importorskip("scipy.stats")


def test_the_interval_is_students_t_and_the_verdict_welchs_test():
    a, b = [0.91, 0.93, 0.92, 0.95], [0.96, 0.97, 0.975, 0.965]
    found = seed_stats.estimate(a)
    low, high = scipy_stats.t.interval(0.95, 3, loc=sum(a) / 4, scale=scipy_stats.sem(a))
    assert (found.n, found.low, found.high) == (4, pytest.approx(low), pytest.approx(high))
    verdict = seed_stats.compare("base", a, "wide", b, "val_accuracy")
    assert verdict.p_value == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert (verdict.mode, verdict.winner) == ("max", "wide")
    assert str(verdict).startswith("wide beats base on val_accuracy beyond seed noise (higher is better; mean 0.9275 "
                                   "vs 0.9675, Welch's t-test p=")
    noisy = seed_stats.compare("base", [0.2, 0.4, 0.3], "other", [0.25, 0.45, 0.2], "val_loss")
    assert noisy.winner is None and "no difference beyond seed noise" in str(noisy)


def test_no_noise_and_too_few_seeds():
    assert seed_stats.compare("a", [1.0, 1.0], "b", [2.0, 2.0], "loss").winner == "a"
    assert seed_stats.compare("a", [1.0, 1.0], "b", [1.0, 1.0], "loss").winner is None
    assert math.isnan(seed_stats.estimate([0.5]).low) and str(seed_stats.estimate([0.5])) == "0.5"
    with pytest.raises(ValueError, match=r"needs at least 2 runs \(seeds\) of each. Received: 1 and 3"):
        seed_stats.compare("a", [1.0], "b", [1.0, 2.0, 3.0], "loss")


def test_tune_seeds_trains_one_run_per_seed_and_puts_the_generators_back():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=generator)
    y = (x[:, 0] > 0).long()

    def build(width):
        def model(seed):
            net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
            result = epochal.Model(net, device="cpu")
            result.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"])
            return result
        return model

    before = torch.get_rng_state()
    small = epochal.tune.seeds(build(2), x, y, seeds=3, epochs=3, validation_split=0.25, verbose=0)
    assert torch.equal(torch.get_rng_state(), before)
    again = epochal.tune.seeds(build(2), x, y, seeds=[0, 1, 2], epochs=3, validation_split=0.25, verbose=0)
    assert small.values() == again.values(), "a seed decides its run"
    assert len(set(small.values())) == 3, "the seeds differ"
    assert small.estimate("val_accuracy").n == 3
    wide = epochal.tune.seeds(build(16), x, y, seeds=3, epochs=3, validation_split=0.25, verbose=0)
    verdict = wide.compare(small, names=("wide", "small"))
    assert verdict.metric == "val_loss" and verdict.estimate_a.mean == pytest.approx(sum(wide.values()) / 3)
    with pytest.raises(ValueError, match="`val_auc` is not in the runs of seeds"):
        small.values("val_auc")
    with pytest.raises(ValueError, match="must not repeat a seed"):
        epochal.tune.seeds(build(2), x, y, seeds=[1, 1])


def test_docstring_examples():
    assert doctest.testmod(seed_stats).failed == 0 and doctest.testmod(seed_runs).failed == 0
