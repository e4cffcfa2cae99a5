"""What the benchmarks share: where the real Quora subset lives, and a machine description."""

import os
import platform
import subprocess
import sys
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


def timed_stage(
    module: str, params_path: Path, *extra: str, log: Path, script: Path | None = None
) -> dict:
    """Run one stage in its own process (or `script`, which stands in for the stage's module):
    wall seconds and the process's peak RSS."""
    entry = [str(script)] if script else ["-m", f"pipeline.stages.{module}"]
    start = time.perf_counter()
    with log.open("a") as out:
        process = subprocess.Popen(
            [sys.executable, *entry, "--params", params_path, *extra],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"bench: {module} {' '.join(extra)} failed (see {log})")
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # kB on Linux
    }
