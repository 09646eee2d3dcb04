"""Measured choices on the user's data: the learning-rate range test, the batch size, and seeds as an axis."""

from epochal.tune.batch_size_search import BatchSizeResult, BatchSizeTrial, batch_size
from epochal.tune.lr_finder import LRFinderResult, find_lr
from epochal.tune.seed_runs import SeedRun, SeedRuns, seeds

__all__ = ["BatchSizeResult", "BatchSizeTrial", "LRFinderResult", "SeedRun", "SeedRuns", "batch_size", "find_lr",
           "seeds"]
