"""Measured choices on the user's data: the learning-rate range test and the batch size."""

from epochal.tune.batch_size_search import BatchSizeResult, BatchSizeTrial, batch_size
from epochal.tune.lr_finder import LRFinderResult, find_lr

__all__ = ["BatchSizeResult", "BatchSizeTrial", "LRFinderResult", "batch_size", "find_lr"]
