"""Callbacks: objects that observe and steer training through Keras-named hooks."""

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.callbacks.callback import Callback, CallbackList
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.lambda_callback import LambdaCallback
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.progress import EpochLogger, ProgbarLogger
from epochal.history import History

__all__ = [
    "BackupAndRestore",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "EpochLogger",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "ProgbarLogger",
]
