"""Callbacks: objects that observe and steer training through Keras-named hooks."""

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.callbacks.callback import Callback
from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.csv_logger import CSVLogger
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.callbacks.ema import EMA
from epochal.callbacks.json_lines_logger import JSONLinesLogger
from epochal.callbacks.lambda_callback import LambdaCallback
from epochal.callbacks.learning_rate import LearningRateScheduler
from epochal.callbacks.live_curves import LiveLearningCurves
from epochal.callbacks.mlflow_logger import MLflowLogger
from epochal.callbacks.model_checkpoint import ModelCheckpoint
from epochal.callbacks.progress import EpochLogger, ProgbarLogger
from epochal.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from epochal.callbacks.rollback import Rollback
from epochal.callbacks.swa import SWA
from epochal.callbacks.tensorboard import TensorBoard
from epochal.callbacks.terminate_on_nan import NonFiniteLossError, TerminateOnNaN
from epochal.callbacks.history import History

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EMA",
    "EarlyStopping",
    "EpochLogger",
    "History",
    "JSONLinesLogger",
    "LambdaCallback",
    "LearningRateScheduler",
    "LiveLearningCurves",
    "MLflowLogger",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "Rollback",
    "SWA",
    "TensorBoard",
    "TerminateOnNaN",
]
