"""LiveLearningCurves: learning curves redrawn in place in a Jupyter notebook after every epoch, the
diagnosis under them at the end (as fastai's ShowGraph or livelossplot); nothing outside a notebook."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from epochal.analysis.curve_svg import learning_curve_svgs
from epochal.analysis.diagnosis import can_diagnose
from epochal.callbacks.callback import Callback
from epochal.callbacks.history import History
from epochal.parallel.process import is_main_process


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (a notebook, JupyterLab, VS Code), where rich output shows."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; never import it here
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LiveLearningCurves(Callback):
    """Draw the learning curves below the cell and update that same output after each epoch.

    One output is replaced in place (`display(..., display_id=True)` then `update`), so nothing
    flickers or scrolls. The charts are the HTML report's inline SVG: train and validation per metric,
    the gap shaded, values on hover. At the end the best epoch and overfitting onset are marked and the
    diagnosis is printed under them. Outside a Jupyter kernel (a script, a terminal), or on a rank other
    than 0 under torch.distributed, it does nothing.

    Args:
        keys: Metrics to draw (`"loss"`, `"accuracy"`...). Defaults to `None`: all.
        monitor: The key of the diagnosis's best epoch and onset. Defaults to `"val_loss"`.

    Example:
        >>> live = LiveLearningCurves()
        >>> live.on_train_begin()
        >>> live.on_epoch_end(0, {"loss": 0.5})   # outside a notebook: nothing is shown
    """

    def __init__(self, keys: Sequence[str] | None = None, monitor: str = "val_loss") -> None:
        super().__init__()
        self.keys, self.monitor = keys, monitor
        self._history = History()
        self._handle: Any = None
        self._active = False

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._history.on_train_begin()
        self._handle = None
        self._active = is_main_process() and in_notebook()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._history.on_epoch_begin(epoch)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._history.on_epoch_end(epoch, logs)
        if self._active:
            self._show("".join(learning_curve_svgs(self._history, keys=self.keys)))

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if not (self._active and can_diagnose(self._history, self.monitor)):
            return  # the last epoch's curves stay as they are
        diagnosis = self._history.diagnose(self.monitor)
        self._show("".join(learning_curve_svgs(self._history, diagnosis, self.keys)),
                   f'<pre style="white-space:pre-wrap;font-size:12px">{escape(str(diagnosis))}</pre>')

    def _show(self, charts: str, footer: str = "") -> None:
        display: Any = importlib.import_module("IPython.display")
        page = display.HTML(f'<div class="epochal-live"><div style="display:grid;grid-template-columns:repeat(auto-fit,'
                            f'minmax(320px,1fr));gap:8px;max-width:1100px">{charts}</div>{footer}</div>')
        if self._handle is None:
            self._handle = display.display(page, display_id=True)
        else:
            self._handle.update(page)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self._history.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._history.load_state_dict(state["history"])
