"""PyTorch Lightning as its docs teach it: a `LightningModule` around the same torch module, logging
epoch means with `self.log`, `Trainer.fit` on DataLoaders (`TensorDataset` for in-memory arrays,
W5's own loaders when streamed), nothing else switched off but the logger, checkpoints and the bar;
`precision` goes to the `Trainer` as it is ("32" or "bf16-mixed")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from clock import EpochSpan, Stamp, now
from workloads import Data, Unsupported



def train(module: nn.Module, data: Data, *, batch_size: int, epochs: int,
          optimizer: Callable[..., torch.optim.Optimizer], device: str = "cpu",
          precision: str = "32") -> tuple[list[EpochSpan], dict[str, float]]:
    """Train `module` with `lightning.Trainer`; the epoch spans run from each training epoch's start to the
    end of its validation."""
    try:
        import lightning as L
    except ImportError as error:
        raise Unsupported(f"unavailable: {error}") from error

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def _step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> torch.Tensor:
            x, y = batch
            logits = self.module(x)
            loss = F.cross_entropy(logits.flatten(0, -2), y.flatten())
            accuracy = (logits.argmax(-1) == y).float().mean()
            self.log_dict({f"{prefix}loss": loss, f"{prefix}accuracy": accuracy}, on_step=False, on_epoch=True,
                          batch_size=len(y))
            return loss

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self._step(batch, "")

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
            self._step(batch, "val_")

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return optimizer(self.parameters())

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.spans: list[list[Stamp]] = []

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            begin = now()
            self.spans.append([begin, begin])

        def _end(self) -> None:
            if self.spans:  # not the sanity check before the first epoch
                self.spans[-1][1] = now()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._end()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            self._end()

    if data.loaders is not None:
        train_loader, validation_loader = data.loaders.train, data.loaders.validation
    else:
        train_loader = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True)
        validation_loader = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=batch_size)
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
                        precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])
    trainer.fit(Classifier(), train_loader, validation_loader)
    logs = {key: float(value) for key, value in trainer.callback_metrics.items()}
    return [(begin, end) for begin, end in timer.spans], logs
