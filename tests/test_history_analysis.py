"""History's export, reload and plotting: what fit recorded comes back exactly, including shorter val_ lists."""

import json
import math

import pytest

from epochal.callbacks.history import History


def recorded():
    """A History filled through its hooks, as fit does, with validation every second epoch."""
    history = History()
    history.set_params({"epochs": 4, "batch_size": 32, "metrics": ["loss", "accuracy"]})
    history.on_train_begin()
    for epoch, loss in enumerate([1.5, 0.75, math.inf, math.nan]):
        logs = {"loss": loss, "accuracy": 0.25 * epoch}
        if epoch % 2:
            logs["val_loss"] = loss + 0.1
        history.on_epoch_end(epoch, logs)
    return history


def same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_round_trip(tmp_path, suffix):
    history = recorded()
    path = tmp_path / f"history{suffix}"
    (history.to_csv if suffix == ".csv" else history.to_json)(path)
    loaded = History.load(path)
    assert loaded.epoch == [0, 1, 2, 3]
    assert list(loaded.history) == ["loss", "accuracy", "val_loss"]
    for key, values in history.history.items():
        assert all(same(a, b) for a, b in zip(loaded.history[key], values, strict=True))
    assert loaded.epochs_of("val_loss") == [1, 3]
    assert loaded.params == (history.params if suffix == ".json" else {})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file is gone


def test_json_keeps_the_validations_by_step_and_csv_its_epochs(tmp_path):
    """A step-based run's mid-epoch validations (`fit(validation_every=N)`) survive the JSON file."""
    history = History()
    history.on_train_begin()
    history.on_validation_end(4, {"val_loss": 0.75, "val_accuracy": 0.5})
    history.on_validation_end(6, {"val_loss": 0.5, "val_accuracy": 0.625})
    history.on_epoch_end(0, {"loss": 0.8, "val_loss": 0.5, "val_accuracy": 0.625})
    history.to_json(tmp_path / "h.json")
    history.to_csv(tmp_path / "h.csv")
    loaded = History.load(tmp_path / "h.json")
    assert loaded.validation_steps == [4, 6]
    assert loaded.validation_history == {"val_loss": [0.75, 0.5], "val_accuracy": [0.5, 0.625]}
    assert History.load(tmp_path / "h.csv").validation_steps == []  # one row per epoch: only the epoch's values


def test_csv_leaves_cells_empty_where_a_key_was_not_logged(tmp_path):
    recorded().to_csv(tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().splitlines() == [
        "epoch,loss,accuracy,val_loss", "0,1.5,0.0,", "1,0.75,0.25,0.85", "2,inf,0.5,", "3,nan,0.75,nan"]


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "h.json"
    path.write_text("old")
    recorded().to_json(path)
    assert json.loads(path.read_text().replace("NaN", "null").replace("Infinity", "null"))["epoch"] == [0, 1, 2, 3]


def test_load_accepts_a_keras_history_dict(tmp_path):
    path = tmp_path / "keras.json"
    path.write_text(json.dumps({"loss": [0.5, 0.4, 0.3], "val_loss": [0.6, 0.5, 0.55]}))
    loaded = History.load(path)
    assert loaded.epoch == [0, 1, 2]
    assert loaded.diagnose().best_epoch == 1


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="must end in .csv or .json"):
        History.load(tmp_path / "h.txt")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="first column must be `epoch`"):
        History.load(tmp_path / "x.csv")


def test_hand_built_shorter_lists_follow_validation_freq():
    history = History()
    history.epoch, history.history = list(range(6)), {"loss": [1.0] * 6, "val_loss": [1.0, 0.9]}
    assert history.epochs_of("loss") == list(range(6))
    assert history.epochs_of("val_loss") == [2, 5]


def test_to_dataframe_aligns_keys_on_epochs():
    frame = recorded().to_dataframe()
    assert frame.index.name == "epoch" and list(frame.index) == [0, 1, 2, 3]
    assert list(frame.columns) == ["loss", "accuracy", "val_loss"]
    assert frame["val_loss"].isna().tolist() == [True, False, True, True]
    assert frame.loc[1, "val_loss"] == 0.85


def overfit_history():
    history = History()
    history.epoch = list(range(10))
    history.history = {"loss": [0.8**i for i in range(10)], "accuracy": [0.5 + 0.05 * i for i in range(10)],
                       "val_loss": [1.0, 0.8, 0.7, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
                       "val_accuracy": [0.5, 0.6, 0.65, 0.7, 0.69, 0.68, 0.68, 0.67, 0.66, 0.65]}
    return history


def test_plot_draws_a_panel_per_metric_with_best_and_onset_marked(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    figure = overfit_history().plot()
    loss_panel, accuracy_panel = figure.axes
    assert (loss_panel.get_title(), accuracy_panel.get_title()) == ("loss", "accuracy")
    labels = [text.get_text() for text in loss_panel.get_legend().get_texts()]
    assert labels == ["train loss", "validation loss", "best epoch 4", "overfitting from 5"]
    path = tmp_path / "curves.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.imread(path).ndim == 3


def test_plot_on_given_axes_and_selected_keys():
    figure_module = pytest.importorskip("matplotlib.figure")
    axis = figure_module.Figure().subplots()
    figure = overfit_history().plot(keys=["val_accuracy"], ax=axis)
    assert figure is axis.figure and axis.get_title() == "accuracy"
    with pytest.raises(ValueError, match=r"Unknown keys \['auc'\]: the history has loss, accuracy"):
        overfit_history().plot(keys=["auc"])
    with pytest.raises(ValueError, match=r"one Axes per metric \(2\)"):
        overfit_history().plot(ax=[axis])


def test_epoch_seconds_are_timed_kept_in_json_and_in_backups(tmp_path):
    history = History()
    history.on_train_begin()
    for epoch in range(2):
        history.on_epoch_begin(epoch)
        history.on_epoch_end(epoch, {"loss": 1.0})
    assert len(history.epoch_seconds) == 2 and all(s >= 0 for s in history.epoch_seconds)
    history.to_json(tmp_path / "h.json")
    assert History.load(tmp_path / "h.json").epoch_seconds == history.epoch_seconds
    restored = History()
    restored.load_state_dict(history.state_dict())
    assert restored.epoch_seconds == history.epoch_seconds
    assert recorded().epoch_seconds == []  # driven without on_epoch_begin: nothing to time


def test_compare_plots_mark_where_a_fork_starts_in_its_colour():
    from epochal.analysis.comparison_html import overlay_svgs
    from epochal.analysis.plotting import plot_histories

    parent, fork = recorded(), recorded()
    fork.record_event("fork", 2, 0, source="backup-00000002.pt", changes={"lr": [0.001, 0.0001]})
    figure = plot_histories({"parent": parent, "fork": fork})
    for axis in figure.axes:
        lines = {line.get_label(): line for line in axis.get_lines()}
        assert "parent forked" not in lines
        assert list(lines["fork forked"].get_xdata()) == [2.5, 2.5], "between the last shared epoch and the first own"
        assert lines["fork forked"].get_color() == lines["fork (train)"].get_color()
    loss_svg = overlay_svgs({"parent": parent, "fork": fork})[0]
    assert "fork forked" in loss_svg and "parent forked" not in loss_svg
