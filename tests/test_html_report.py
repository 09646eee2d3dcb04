"""The HTML run report: one self-contained page, checked as markup and in headless Chromium (Debian's
`chromium`, driven by playwright): no console error, no request leaving the file, the curves drawn,
hover values, readable on a phone; its screenshots are kept under test-artifacts/."""

import math
import shutil
from pathlib import Path

import pytest
import torch

import epochal
from epochal.analysis.html_report import render_report
from epochal.analysis.interpretation import interpret_classification, interpret_regression
from epochal.callbacks.history import History

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def overfitting_history():
    """Six epochs: validation best at epoch 3 (index 2), worse after while training keeps improving."""
    history = History()
    history.set_params({"epochs": 6, "batch_size": 32, "metrics": ["loss", "accuracy", "val_loss", "val_accuracy"]})
    history.on_train_begin()
    for epoch, (loss, val) in enumerate([(1.0, 1.1), (0.6, 0.7), (0.4, 0.5), (0.3, 0.55), (0.2, 0.6), (0.1, 0.7)]):
        history.on_epoch_begin(epoch)
        history.on_epoch_end(epoch, {"loss": loss, "accuracy": 1 - loss / 2, "val_loss": val,
                                     "val_accuracy": 1 - val / 2})
    return history


def interpretation():
    probabilities = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    return interpret_classification(probabilities, torch.tensor([0, 1, 1, 2]), class_names=["cat", "dog", "<b>"])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    history = overfitting_history()
    history.to_html(path, interpretation(), title="Six epochs")
    return path


def test_the_page_is_one_self_contained_responsive_file(report):
    page = report.read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "Content-Security-Policy\" content=\"default-src 'none';" in page  # the browser may fetch nothing
    assert " src=" not in page and " href=" not in page and "@import" not in page and "url(" not in page
    assert page.count('<svg class="chart"') == 2 + 1  # loss, accuracy, reliability diagram
    assert 'data-label="best epoch 3"' in page and 'data-label="overfitting from epoch 4"' in page
    assert page.count('class="band"') == 2  # the train/validation gap of both metrics
    assert "Overfitting onset: epoch 4" in page  # the diagnosis text
    assert "<td>batch_size</td><td>32</td>" in page  # History.params
    assert "<h2>Timings</h2>" in page
    assert "<th>&lt;b&gt;</th>" in page and "<th><b></th>" not in page  # user text is escaped


def test_a_fit_history_shows_how_the_model_was_compiled_also_once_saved_and_loaded(tmp_path):
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer=torch.optim.SGD(model.module.parameters(), lr=0.05, momentum=0.9), loss="huber")
    history = model.fit(torch.randn(16, 3), torch.randn(16, 1), epochs=2, verbose=0)
    history.to_json(tmp_path / "history.json")
    for shown in (history, History.load(tmp_path / "history.json")):
        shown.to_html(tmp_path / "report.html")
        page = (tmp_path / "report.html").read_text(encoding="utf-8")
        for name, value in (("optimizer.name", "SGD"), ("optimizer.lr", "0.05"), ("optimizer.momentum", "0.9"),
                            ("loss", "huber_loss"), ("epochs", "2")):
            assert f"<td>{name}</td><td>{value}</td>" in page


def test_a_regression_interpretation_shows_its_residual_summary_and_plot():
    result = interpret_regression(torch.tensor([1.0, 2.0, 4.0, 3.0]), torch.tensor([1.0, 3.0, 2.0, 3.0]))
    page = render_report(overfitting_history(), interpretation=result)
    assert "<h3>Residuals</h3>" in page and "Confusion matrix" not in page
    assert page.count('<svg class="chart"') == 2 + 1  # loss, accuracy, residuals against predictions
    assert page.count("<title>prediction ") == 4 and "<title>prediction 4, residual -2" in page  # a point a sample


def test_a_history_without_epochs_or_timings_still_renders():
    page = render_report(History(), title="empty")
    assert "No epoch completed yet." in page and "<svg" not in page and "Timings" not in page


@pytest.fixture(scope="module")
def chromium():
    executable = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                      None)
    if executable is None:
        pytest.skip("No Chromium on this machine (CI installs Debian's `chromium`; apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(chromium, report, **viewport):
    """The report in a fresh page; every request is routed (and all but the file itself aborted) and logged."""
    page = chromium.new_page(viewport=viewport)
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    def route(handle):
        requests.append(handle.request.url)
        handle.continue_() if handle.request.url == report.as_uri() else handle.abort()

    page.route("**/*", route)
    page.goto(report.as_uri())
    return page, problems, requests


def _keep(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=path, full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_chromium_draws_the_curves_with_hover_values_and_no_error_nor_request(chromium, report, tmp_path):
    page, problems, requests = _open(chromium, report, width=1100, height=900)
    counts = page.eval_on_selector_all("svg.chart", "charts => charts.slice(0, 2).map(c => "
                                       "[...c.querySelectorAll('g.series')].map(s => s.querySelectorAll('circle').length))")
    assert counts == [[6, 6], [6, 6]]  # train and validation points of loss and accuracy, every epoch
    box = page.locator("svg.chart >> nth=0").bounding_box()
    assert box["width"] > 300 and box["height"] > 150  # drawn, not collapsed
    page.hover("svg.chart >> nth=0 >> rect.hover >> nth=3")
    assert page.inner_text("#tip") == "epoch 4 · loss 0.3 · val_loss 0.55 · gap 0.25"
    _keep(page, tmp_path, "report-desktop.png")
    assert problems == [] and requests == [report.as_uri()]


@pytest.mark.slow
def test_on_a_phone_nothing_is_wider_than_the_screen(chromium, report, tmp_path):
    page, problems, _ = _open(chromium, report, width=375, height=740)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    widths = page.eval_on_selector_all("svg.chart", "charts => charts.map(c => c.getBoundingClientRect().width)")
    assert all(300 < width <= 375 for width in widths)
    _keep(page, tmp_path, "report-phone.png")
    assert problems == []


def test_non_finite_values_break_the_line_instead_of_breaking_the_page():
    history = History()
    history.on_train_begin()
    for epoch, loss in enumerate([1.0, math.nan, 0.5, math.inf]):
        history.on_epoch_end(epoch, {"loss": loss})
    page = render_report(history)
    assert page.count('class="point"') == 2 and "<polyline" not in page  # no two finite neighbours to join
    assert 'data-tip="epoch 2 · loss nan"' in page  # the hover still tells what was logged
