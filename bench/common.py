"""What the benchmarks share: where the real Quora subset lives, and a machine description."""

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_TSV = ROOT.parent / "shared" / "data" / "quora" / "quora_pairs_subset.tsv"


def machine() -> str:
    """Architecture with the CPU's model (timings differ twofold between x86_64 machines here),
    cores and Python."""
    return (
        f"{platform.machine()}{cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def cpu_model() -> str:
    """' (model name)' from /proc/cpuinfo, or '' where there is none."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return f" ({line.partition(':')[2].strip()})"
    except OSError:
        pass
    return ""


def _stop(signum, _frame):
    raise SystemExit(128 + signum)


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
        # a benchmark stopped by a signal stops its stage too, instead of leaving it running
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"bench: {module} {' '.join(extra)} failed (see {log})")
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # kB on Linux
    }
