"""LiveLearningCurves in a real notebook executed by nbclient: one output, redrawn in place each epoch,
the diagnosis under it at the end; and nothing at all outside a notebook."""

from pathlib import Path

import pytest
import torch

import epochal
from epochal.callbacks.live_curves import LiveLearningCurves

SOURCE = Path(epochal.__file__).parents[1]


def test_outside_a_notebook_it_shows_nothing(capsys):
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(torch.randn(16, 3), torch.randn(16, 1), epochs=2, verbose=0, callbacks=[LiveLearningCurves()])
    assert capsys.readouterr() == ("", "")


def test_a_notebook_gets_one_output_updated_in_place_each_epoch_then_the_diagnosis():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        f"import sys; sys.path.insert(0, {str(SOURCE)!r})\n"
        "import torch, epochal\n"
        "torch.manual_seed(0)\n"
        "x = torch.randn(64, 3)\n"
        "model = epochal.Model(torch.nn.Linear(3, 1), device='cpu')\n"
        "model.compile(optimizer='sgd', loss='mse', metrics=['mae'])\n"
        "history = model.fit(x, x.sum(1, keepdim=True), epochs=3, validation_split=0.25, verbose=0,\n"
        "                    callbacks=[epochal.callbacks.LiveLearningCurves()])")]
    messages = []

    class Recording(nbclient.NotebookClient):
        def process_message(self, msg, cell, cell_index):
            messages.append(msg["msg_type"])
            return super().process_message(msg, cell, cell_index)

    Recording(notebook, timeout=120, kernel_name="python3").execute()
    assert [m for m in messages if "display" in m or m in ("clear_output", "stream", "error")] == [
        "display_data", "update_display_data", "update_display_data", "update_display_data"]  # 3 epochs + the end
    [output] = notebook.cells[0].outputs
    page = output["data"]["text/html"]
    assert page.count('class="series"') == 4  # loss and mae, train and validation
    assert page.count('class="point"') == 4 * 3
    assert "Diagnosis of 3 epochs (monitor: val_loss, min)" in page and "Recommendation:" in page
