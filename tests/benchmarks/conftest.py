"""The benchmark scripts import each other by bare name (they run as `python benchmarks/run.py`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
