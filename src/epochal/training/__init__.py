"""Assembling and running a fit: the epoch and batch loops, exact epoch means, the run's position and its backups."""
