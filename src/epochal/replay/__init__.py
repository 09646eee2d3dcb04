"""Replaying runs to see where they part: `diverge` names the first batch after which two runs' weights differ."""

from epochal.replay.divergence import Divergence, ModuleDifference, ParameterDifference, diverge

__all__ = ["Divergence", "ModuleDifference", "ParameterDifference", "diverge"]
