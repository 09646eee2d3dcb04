"""diagnose() on synthetic histories of each shape, table-driven, with the expected reading of each."""

import math

import pytest

from epochal.analysis.diagnosis import (
    DIVERGING,
    GENERALISING,
    LEARNING,
    MEMORISING,
    OVERFITTING,
    PLATEAU,
    UNDERFITTING,
    UNUSUAL,
    Thresholds,
    can_diagnose,
    diagnose,
    early_stopping_epoch,
)
from epochal.callbacks.history import History


def make(**series):
    """A History with `series` as its lists; epochs are 0..n-1 for the longest list."""
    history = History()
    history.epoch = list(range(max(len(v) for v in series.values())))
    history.history = {key: list(values) for key, values in series.items()}
    return history


def overfitting():
    train = [0.9**i for i in range(12)]
    val = [t + 0.1 for t in train[:7]] + [train[6] + 0.1 + 0.01 * i for i in range(1, 6)]
    return make(loss=train, val_loss=val)


def converged():
    train = [0.1 + 0.9 * 0.5**i for i in range(15)]
    return make(loss=train, val_loss=[t + 0.02 for t in train])


def still_falling():
    train = [1.0 - 0.05 * i for i in range(10)]
    return make(loss=train, val_loss=[t + 0.05 for t in train])


def diverging():
    return make(loss=[1.0, 0.8, 0.7, 0.9, 1.5, math.nan], val_loss=[1.0, 0.85, 0.75, 0.95, 1.6, math.nan])


def no_validation():
    return make(loss=[1.0, 0.5, 0.4, 0.39, 0.389])


def every_second_epoch():  # validation_freq=2: val_ measured at epochs 1, 3, 5, 7, 9
    return make(loss=[0.8**i for i in range(10)], val_loss=[0.9, 0.7, 0.6, 0.65, 0.7])


def accuracy_peaks():
    return make(loss=[1, .6, .4, .3, .2, .15], accuracy=[.5, .72, .85, .9, .95, .97],
                val_loss=[1, .7, .5, .45, .47, .5], val_accuracy=[.5, .7, .8, .82, .81, .80])


CASES = [
    # name, history, monitor, patience, expected attributes
    ("overfitting", overfitting, "val_loss", 3,
     dict(best_epoch=6, onset_epoch=7, diverged_epoch=None, early_stopping_epoch=9, smallest_safe_patience=0,
          phases=[LEARNING] * 7 + [OVERFITTING] * 5)),
    ("converged", converged, "val_loss", 3,
     dict(best_epoch=14, onset_epoch=None, early_stopping_epoch=None, last_phase=PLATEAU)),
    ("still falling", still_falling, "val_loss", 3,
     dict(best_epoch=9, onset_epoch=None, last_phase=UNDERFITTING)),
    ("diverging", diverging, "val_loss", 3,
     dict(best_epoch=2, onset_epoch=None, diverged_epoch=3,
          phases=[LEARNING] * 3 + [DIVERGING] * 3)),
    ("no validation", no_validation, "val_loss", 3,
     dict(monitor="loss", best_epoch=4, onset_epoch=None, has_validation=False, gaps_at_best=[])),
    ("validation_freq=2", every_second_epoch, "val_loss", 1,
     dict(best_epoch=5, onset_epoch=6, early_stopping_epoch=7, phases_from_6=[OVERFITTING] * 4)),
    ("accuracy monitor", accuracy_peaks, "val_accuracy", 1,
     dict(mode="max", best_epoch=3, best_value=.82, onset_epoch=4, early_stopping_epoch=4)),
]


@pytest.mark.parametrize("name, build, monitor, patience, expected", CASES, ids=[c[0] for c in CASES])
def test_diagnosis_of_each_shape(name, build, monitor, patience, expected):
    diagnosis = diagnose(build(), monitor, patience=patience)
    for field, value in expected.items():
        if field == "last_phase":
            assert diagnosis.phases[-1] == value
        elif field == "phases_from_6":
            assert diagnosis.phases[6:] == value
        else:
            assert getattr(diagnosis, field) == value, field


@pytest.mark.parametrize("train_loss, reading", [(0.1, MEMORISING), (0.48, GENERALISING), (0.6, UNUSUAL)])
def test_gap_reading(train_loss, reading):
    diagnosis = diagnose(make(loss=[1.0, train_loss], val_loss=[1.0, 0.5]))
    [gap] = diagnosis.gaps_at_best
    assert (gap.metric, gap.epoch, gap.train, gap.val, gap.reading) == ("loss", 1, train_loss, 0.5, reading)
    assert gap.relative == pytest.approx((0.5 - train_loss) / 0.5)


def test_thresholds_are_arguments():
    history = make(loss=[1.0, 0.1], val_loss=[1.0, 0.5])
    assert diagnose(history, thresholds=Thresholds(memorising=0.9)).gaps_at_best[0].reading == GENERALISING


def test_gaps_at_last_epoch_when_it_is_not_the_best():
    diagnosis = diagnose(overfitting())
    assert [(g.epoch, g.reading) for g in diagnosis.gaps_at_best] == [(6, GENERALISING)]
    assert [(g.epoch, g.reading) for g in diagnosis.gaps_at_last] == [(11, MEMORISING)]


@pytest.mark.parametrize("build, phrases", [
    (overfitting, ["Stop at epoch 7", "overfitting starts at epoch 8", "EarlyStopping(patience=3) would have "
                   "stopped at epoch 10", "restore_best_weights=True"]),
    (converged, ["levelled off", "would not have stopped"]),
    (still_falling, ["train for more epochs"]),
    (diverging, ["diverged at epoch 4", "lower the learning rate"]),
    (no_validation, ["Add validation data"]),
])
def test_recommendation(build, phrases):
    recommendation = diagnose(build()).recommendation
    for phrase in phrases:
        assert phrase in recommendation


def test_recommendation_flags_a_patience_that_stops_before_the_best():
    history = make(loss=[1.0, 0.8, 0.7, 0.6, 0.5, 0.4], val_loss=[1.0, 0.9, 0.95, 0.96, 0.8, 0.85])
    diagnosis = diagnose(history, patience=1)
    assert (diagnosis.early_stopping_epoch, diagnosis.best_epoch, diagnosis.smallest_safe_patience) == (2, 4, 3)
    assert ("EarlyStopping(patience=1) would have stopped at epoch 3, too early: the best came at epoch 5; "
            "patience=3 is the smallest that waits for it.") in diagnosis.recommendation


def test_report_text_counts_epochs_from_one():
    text = str(diagnose(overfitting()))
    assert "Phases: 1-7 learning, 8-12 overfitting" in text
    assert "Best epoch: 7 (val_loss = 0.6314)" in text
    assert "Overfitting onset: epoch 8" in text
    assert "Gap at last epoch 12, loss" in text and "memorising" in text
    assert text.splitlines()[-1].startswith("Recommendation: Stop at epoch 7")


def test_early_stopping_replay_matches_the_callback_rule():
    history = make(val_loss=[3.0, 2.0, 2.5, 2.4, 2.6])
    assert [early_stopping_epoch(history, patience=p) for p in range(5)] == [2, 2, 3, 4, None]
    assert early_stopping_epoch(history, patience=0, baseline=1.0) == 2  # Keras 3: improving epochs never stop
    assert early_stopping_epoch(history, patience=1, min_delta=0.5) == 2


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no epochs"):
        diagnose(History())
    with pytest.raises(ValueError, match="`monitor` 'val_auc' is not in the history. Available keys: loss"):
        diagnose(make(loss=[1.0]), "val_auc")


def test_can_diagnose_says_when_there_is_something_to_read():
    assert can_diagnose(make(loss=[1.0, 0.5]))  # val_loss falls back to loss, as diagnose does
    assert not can_diagnose(make(loss=[1.0]), "val_auc")
    assert not can_diagnose(History())
