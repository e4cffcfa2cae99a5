"""What the benchmarks share: where the real Quora subset lives, and a machine description."""

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_TSV = ROOT.parent / "shared" / "data" / "quora" / "quora_pairs_subset.tsv"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
