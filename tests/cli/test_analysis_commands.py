"""`epochal report`, `compare` and `runs` on folders of finished (and interrupted) runs."""

import shutil

import pytest


@pytest.fixture(scope="module")
def runs(tmp_path_factory, epochal_cli):
    """Two finished iris runs (2 and 4 epochs) and one cut off after its history was written."""
    root = tmp_path_factory.mktemp("runs")
    for name, epochs in (("short", 2), ("long", 4)):
        code, out = epochal_cli("train", "--data", "iris", "--epochs", epochs, "--out", root, "--name", name,
                                "--verbose", "0")
        assert code == 0, out
    shutil.copytree(root / "long", root / "killed")
    (root / "killed" / "summary.json").unlink()
    return root


def test_report_prints_the_diagnosis_and_the_interpretation_and_writes_the_curves(runs, epochal_cli, is_png):
    (runs / "long" / "learning_curve.png").unlink()
    code, out = epochal_cli("report", runs / "long")
    assert code == 0
    assert out.startswith("Diagnosis of 4 epochs (monitor: val_loss, min)\nPhases: ")
    assert out.rstrip().endswith(f"Learning curves: {runs / 'long' / 'learning_curve.png'}")
    assert is_png(runs / "long" / "learning_curve.png")
    assert (runs / "long" / "diagnosis.txt").read_text() in out
    # the best weights, rebuilt from the run's config, on the 30 test rows iris held out
    assert "\nInterpretation of 30 samples (classification)\nAccuracy: " in out
    assert "Confusion matrix (rows: true class, columns: predicted):" in out


def test_report_html_writes_one_page_with_the_curves_settings_and_interpretation(runs, epochal_cli):
    (runs / "short" / "report.html").unlink()
    code, out = epochal_cli("report", runs / "short", "--html")
    assert code == 0 and out.rstrip().endswith(f"Report: {runs / 'short' / 'report.html'}")
    page = (runs / "short" / "report.html").read_text(encoding="utf-8")
    assert page.count('<svg class="chart"') == 3  # loss, accuracy, reliability diagram
    assert "<td>data</td><td>iris</td>" in page and "<td>test accuracy</td>" in page
    assert "<h3>Confusion matrix</h3>" in page


def test_a_killed_run_is_reported_without_interpretation(runs, epochal_cli):
    (runs / "killed" / "best.safetensors").unlink(missing_ok=True)
    code, out = epochal_cli("report", runs / "killed")
    assert code == 0 and f"No interpretation: no config.toml and best.safetensors in {runs / 'killed'}" in out


def test_report_on_a_folder_that_does_not_exist(tmp_path, epochal_cli):
    code, out = epochal_cli("report", tmp_path / "nowhere")
    assert code == 2
    assert f"Error: Invalid value for 'RUN': Directory '{tmp_path / 'nowhere'}' does not exist." in out


def test_compare_tabulates_best_figures_and_overlays_curves(runs, epochal_cli, is_png, tmp_path):
    code, out = epochal_cli("compare", runs / "short", runs / "long", "--out", tmp_path / "both.png")
    assert code == 0
    header, short, long, _, saved = out.splitlines()
    assert header.split() == ["run", "data", "status", "epochs", "best", "epoch", "val_loss", "val_accuracy",
                              "test", "loss", "test", "accuracy", "seconds"]
    assert short.split()[:5] == ["short", "iris", "finished", "2", "2"]
    assert long.split()[:5] == ["long", "iris", "finished", "4", "4"]
    assert saved == f"Curves of 2 runs: {tmp_path / 'both.png'}"
    assert is_png(tmp_path / "both.png")


def test_runs_lists_every_run_in_a_folder(runs, epochal_cli):
    code, out = epochal_cli("runs", runs)
    assert code == 0
    names_and_status = [line.split()[:3] for line in out.splitlines()[1:]]
    assert names_and_status == [["killed", "iris", "running"], ["long", "iris", "finished"],
                                ["short", "iris", "finished"]]


def test_runs_in_an_empty_or_missing_folder(tmp_path, epochal_cli):
    assert epochal_cli("runs", tmp_path) == (0, f"No runs in {tmp_path}/ yet: `epochal train` makes one.\n")
    code, out = epochal_cli("runs", tmp_path / "nowhere")
    assert code == 1 and "No such folder" in out


def test_report_on_a_folder_that_is_not_a_run(tmp_path, epochal_cli):
    code, out = epochal_cli("report", tmp_path)
    assert code == 1
    assert out == f"Error: {tmp_path} is not an epochal run folder (no history.json); `epochal runs` lists the " \
                  "runs under a folder.\n"
