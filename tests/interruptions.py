"""Interrupting a fit from inside, as a preemption does: shared by the resume, fork and rollback tests."""

import os
import signal

from epochal.callbacks import Callback


class SigtermAfter(Callback):
    """Sends this process SIGTERM after its `at`-th training batch (never when None): the batch ends, a backup
    is written and `fit` stops, as on a preemption."""

    def __init__(self, at):
        super().__init__()
        self.at, self.count = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
