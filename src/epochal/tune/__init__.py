"""Tuning what a run is given: the learning-rate range test."""
