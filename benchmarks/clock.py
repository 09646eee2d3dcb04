"""The clock every variant's epoch timer reads: wall time, and this process's CPU time beside it.

CPU time (all threads of this process; not DataLoader workers, which are processes of their own) is
what a single-threaded run costs whatever else the machine runs; on the shared development
machines wall time can be several times longer than CPU time (other engineers' jobs, steal time)."""

from __future__ import annotations

import time
from typing import NamedTuple


class Stamp(NamedTuple):
    wall: float  # time.perf_counter()
    cpu: float  # time.process_time()


EpochSpan = tuple[Stamp, Stamp]


def now() -> Stamp:
    return Stamp(time.perf_counter(), time.process_time())
