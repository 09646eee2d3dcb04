"""Each schedule is a pure function checked against its formula (and PyTorch's scheduler where one exists)."""

import math

import pytest
import torch

from epochal import schedules


def _torch_lrs(make_scheduler, steps: int, lr: float) -> list[float]:
    """The learning rate a torch scheduler sets at each of `steps` steps."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_constant():
    assert [schedules.constant(0.3)(i) for i in (0, 7, 10**6)] == [0.3, 0.3, 0.3]


def test_piecewise_constant_boundaries_belong_to_the_earlier_piece():
    schedule = schedules.piecewise_constant([2, 5], [1.0, 0.5, 0.25])
    assert [schedule(i) for i in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_formula(staircase):
    schedule = schedules.exponential_decay(0.1, 4, 0.5, staircase=staircase)
    for i in range(20):
        exponent = i // 4 if staircase else i / 4
        assert schedule(i) == pytest.approx(0.1 * 0.5**exponent)


def test_step_decay_is_staircase_exponential_decay():
    assert [schedules.step_decay(1.0, 3, 0.1)(i) for i in (0, 2, 3, 6)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_cosine_decay_matches_torch_cosine_annealing():
    base, steps, alpha = 0.2, 10, 0.1
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, steps, eta_min=alpha * base),
                          steps + 1, base)
    schedule = schedules.cosine_decay(base, steps, alpha=alpha)
    assert [schedule(i) for i in range(steps + 1)] == pytest.approx(expected)
    assert schedule(50) == pytest.approx(alpha * base)  # stays at the floor


def test_cosine_decay_with_warmup_follows_keras():
    schedule = schedules.cosine_decay(0.0, 10, alpha=0.0, warmup_steps=5, warmup_target=1.0)
    assert [schedule(i) for i in range(6)] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert schedule(10) == pytest.approx(0.5)  # halfway through the decay
    assert schedule(15) == pytest.approx(0.0) and schedule(99) == pytest.approx(0.0)


@pytest.mark.parametrize("t_mul", [1.0, 2.0])
def test_cosine_decay_restarts_matches_torch_warm_restarts(t_mul):
    base, first, alpha = 0.1, 5, 0.2
    expected = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, first, int(t_mul), eta_min=alpha * base),
        40, base)
    schedule = schedules.cosine_decay_restarts(base, first, t_mul=t_mul, alpha=alpha)
    assert [schedule(i) for i in range(40)] == pytest.approx(expected)


def test_cosine_decay_restarts_scales_each_restart_by_m_mul():
    schedule = schedules.cosine_decay_restarts(1.0, 10, t_mul=2.0, m_mul=0.5)
    assert [schedule(i) for i in (0, 10, 20, 30)] == pytest.approx([1.0, 0.5, 0.25, 0.25])


def test_linear_warmup():
    schedule = schedules.linear_warmup(0.01, 0.11, 10)
    assert [schedule(i) for i in (0, 5, 10, 20)] == pytest.approx([0.01, 0.06, 0.11, 0.11])


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_matches_torch(anneal):
    expected = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=20, anneal_strategy=anneal),
        20, 0.5)
    schedule = schedules.one_cycle(0.5, 20, anneal=anneal)
    assert [schedule(i) for i in range(20)] == pytest.approx(expected)
    assert schedule(100) == pytest.approx(expected[-1])


def test_join_gives_each_piece_a_relative_index():
    schedule = schedules.join(
        [schedules.linear_warmup(0.0, 1.0, 2), schedules.exponential_decay(1.0, 1, 0.5), schedules.constant(0.1)],
        boundaries=[2, 5])
    assert [schedule(i) for i in range(7)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.25, 0.1, 0.1])


@pytest.mark.parametrize("make, message", [
    (lambda: schedules.exponential_decay(1.0, 0, 0.5), r"`decay_steps` must be > 0. Received: decay_steps=0"),
    (lambda: schedules.piecewise_constant([1, 2], [1.0]), r"`values` must have one more entry"),
    (lambda: schedules.piecewise_constant([2, 1], [1.0, 2.0, 3.0]), r"`boundaries` must be strictly increasing"),
    (lambda: schedules.join([schedules.constant(1.0)], [3]), r"`schedules` must have one more entry"),
    (lambda: schedules.one_cycle(1.0, 10, pct_start=1.5), r"`pct_start` must be in \(0, 1\)"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedules_return_python_floats():
    assert all(isinstance(s(3), float) for s in (
        schedules.constant(1), schedules.piecewise_constant([1], [1, 2]), schedules.cosine_decay(1, 10),
        schedules.cosine_decay_restarts(1, 2), schedules.one_cycle(1, 10), schedules.linear_warmup(0, 1, 5)))
    assert not math.isnan(schedules.cosine_decay_restarts(1.0, 3, t_mul=3.0)(100))
