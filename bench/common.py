"""What the benchmarks share: where the real Quora subset lives, and a machine description."""

import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_TSV = ROOT.parent / "shared" / "data" / "quora" / "quora_pairs_subset.tsv"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def best_of(repeats: int, run):
    """(result, fastest seconds) over `repeats` runs; earlier results are freed first."""
    best = float("inf")
    for _ in range(repeats):
        result = None
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best
