"""The flags shared by `train` and `tune`: data, model and fit choices, each also a `--config` key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from epochal.cli.config import TrainConfig, load_toml, resolve
from epochal.cli.data import BUNDLED, Data, load_data

_D = TrainConfig()


def _options() -> list[Callable[[Any], Any]]:
    # Every default is None so that only flags actually given override the --config file.
    return [
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                     help="A TOML file of these settings (same names); flags override it."),
        click.option("--data", help=f"{'|'.join(BUNDLED)} (scikit-learn's bundled sets) or a .csv, .parquet "
                                    f"or .npz file. Defaults to {_D.data}."),
        click.option("--target", help="The column (or npz array) to predict; required for csv/parquet."),
        click.option("--task", type=click.Choice(["auto", "classification", "regression"]),
                     help="Defaults to auto: whole-number or text targets are classes, others regression."),
        click.option("--test-split", type=float,
                     help=f"Fraction held out for the final test. Defaults to {_D.test_split}."),
        click.option("--model", help="mlp, or package.module:factory called as factory(inputs=, outputs=) -> "
                                     "nn.Module ending in probabilities for classification. Defaults to mlp."),
        click.option("--hidden", help="The MLP's hidden widths, comma-separated. Defaults to 128,64."),
        click.option("--dropout", type=float, help=f"The MLP's dropout. Defaults to {_D.dropout}."),
        click.option("--epochs", type=int, help=f"Most epochs to train. Defaults to {_D.epochs}."),
        click.option("--batch-size", type=int, help=f"Defaults to {_D.batch_size}."),
        click.option("--validation-split", type=float,
                     help=f"Fraction of the training rows validated on. Defaults to {_D.validation_split}."),
        click.option("--optimizer", help=f"A Keras optimizer name. Defaults to {_D.optimizer}."),
        click.option("--lr", type=float, help="Learning rate. Defaults to the optimizer's Keras default."),
        click.option("--loss", help="A Keras loss name. Defaults to sparse_categorical_crossentropy or mse."),
        click.option("--metrics", help="Comma-separated metric names. Defaults to accuracy or mae."),
        click.option("--patience", type=int, help=f"EarlyStopping patience on val_loss. Defaults to {_D.patience}."),
        click.option("--seed", type=int, help=f"Seeds the split, the weights and the shuffles. Defaults to {_D.seed}."),
        click.option("--threads", type=int, help="CPU threads for torch; 1 is fastest for small models on a busy "
                                                 "machine. Defaults to torch's choice."),
        click.option("--out", help=f"Folder that runs and plots are written in. Defaults to {_D.out}."),
    ]


def training_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every shared flag to a click command."""
    for option in reversed(_options()):
        command = option(command)
    return command


def config_from(flags: dict[str, Any], base: dict[str, Any] | None = None) -> TrainConfig:
    """The settings of a command: defaults, `base` (a resumed run's), `--config`, then the flags given."""
    config_file = flags.pop("config_file", None)
    shared = {name: flags.pop(name) for name in list(flags) if name in TrainConfig.__dataclass_fields__}
    return resolve(base or {}, load_toml(config_file) if config_file else {}, shared)


def data_for(config: TrainConfig) -> Data:
    """The data set a config names, split and scaled."""
    return load_data(config.data, target=config.target, task=config.task, test_split=config.test_split,
                     validation_split=config.validation_split, seed=config.seed)
