"""The interpretation of a run on its held-out test rows: from the model in memory after `train`, or rebuilt
from a run folder's config and best weights for `report`."""

from __future__ import annotations

from epochal.analysis.interpretation import Interpretation
from epochal.cli import run_folder
from epochal.cli.config import TrainConfig, resolve
from epochal.cli.data import Data
from epochal.cli.errors import CliError
from epochal.cli.models import build_model
from epochal.cli.options import data_for
from epochal.cli.run_folder import Run
from epochal.model import Model


def interpret_test(model: Model, data: Data) -> Interpretation:
    """What `model` gets wrong on the test rows `train` held out, with the data's class names."""
    return model.interpret(data.x_test, data.y_test, class_names=data.classes)


def interpret_run(run: Run) -> Interpretation:
    """Rebuild the run's data split and model from its config, load its best weights and interpret them.

    Raises:
        CliError: The run has no config or no best weights (it was killed, or is still training).
    """
    weights = run.path / run_folder.BEST_WEIGHTS
    if not run.config or not weights.is_file():
        raise CliError(f"no {run_folder.CONFIG} and {run_folder.BEST_WEIGHTS} in {run.path} (the run did not finish)")
    config: TrainConfig = resolve(run.config)
    data = data_for(config)
    model = build_model(config, data)
    model.load_weights(weights)
    return interpret_test(model, data)
