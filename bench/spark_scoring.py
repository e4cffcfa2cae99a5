"""Benchmark: scoring on Spark (`dupq-score --engine spark --master local[2]`) against
`dupq-score` in one process, on the same pairs, the same bundles and the same 2 cores.

Pairs are random pairings of the real questions of ../shared/data/quora/quora_pairs_subset.tsv
(seeded, as bench/scoring.py makes them), 1M and 10M by default, written once as Parquet with
row groups of 100k rows (so that Spark splits a file into tasks). Each run is the whole CLI
in a child process, start-up included. Memory: the peak RSS of the dupq-score process, and
for Spark the peak RSS of each Python worker (an executor's share of the work; sampled every
0.2 s) and of the JVM. Writes reports/bench/spark_scoring.json, keeping the figures of models
not run this time. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import date

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from common import ROOT, machine
from scoring import make_pairs

from pipeline.io import read_json, write_json

ROW_GROUP = 100_000


def run_sampled(cmd: list[str]) -> dict:
    """Wall seconds of a child process, and the peak RSS (MB) of it and of its descendants:
    the largest Python worker and the largest other process (Spark's JVM)."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peaks: dict[int, tuple[str, int]] = {}
    while process.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            family = []
        for proc in family:
            try:
                rss, command = proc.memory_info().rss, " ".join(proc.cmdline())
            except psutil.Error:  # ended meanwhile
                continue
            if proc.pid == root.pid:
                role = "driver"
            elif "pyspark" in command and "java" not in proc.name():
                role = "python_worker"
            else:
                role = proc.name()
            if rss > peaks.get(proc.pid, ("", 0))[1]:
                peaks[proc.pid] = (role, rss)
        time.sleep(0.2)
    stderr = process.stderr.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({process.returncode}):\n{stderr[-3000:]}")
    by_role: dict[str, int] = {}
    for role, rss in peaks.values():
        by_role[role] = max(by_role.get(role, 0), rss)
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": {role: round(rss / 2**20) for role, rss in sorted(by_role.items())},
        "python_workers": sum(role == "python_worker" for role, _ in peaks.values()),
    }


def write_pairs(size: int, path) -> None:
    if not path.exists():
        table = pa.Table.from_pandas(make_pairs(size), preserve_index=False)
        pq.write_table(table, path, row_group_size=ROW_GROUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default="models", help="bundles (default: the demo's)")
    parser.add_argument("--models", nargs="*", default=["gbdt", "residual"])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1_000_000, 10_000_000])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", default="reports/bench/spark_run")
    parser.add_argument("--output", default="reports/bench/spark_scoring.json")
    args = parser.parse_args()
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    output = ROOT / args.output
    earlier = read_json(output)["models"] if output.exists() else {}
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "master": args.master,
        "models_dir": args.models_dir,
        "sizes": args.sizes,
        "models": {name: rows for name, rows in earlier.items() if name not in args.models},
    }
    for size in args.sizes:
        write_pairs(size, work / f"pairs_{size}.parquet")
    for model in args.models:
        bundle = str(ROOT / args.models_dir / model)
        rows = report["models"][model] = {}
        for size in args.sizes:
            source = str(work / f"pairs_{size}.parquet")
            local_out, spark_out = work / f"local_{model}.parquet", work / f"spark_{model}"
            shutil.rmtree(spark_out, ignore_errors=True)
            score = [sys.executable, "-m", "pipeline.score", "--model", bundle, "--input", source]
            local = run_sampled([*score, "--output", str(local_out), "--quiet"])
            spark = run_sampled(
                [*score, "--output", str(spark_out), "--engine", "spark", "--master", args.master]
            )
            for run in (local, spark):
                run["pairs_per_s"] = round(size / run["seconds"])
            rows[str(size)] = {
                "local": local,
                "spark": spark,
                "spark_over_local": round(local["seconds"] / spark["seconds"], 3),
            }
            print(f"{model} {size:,}: {rows[str(size)]}", flush=True)
            local_out.unlink()
            shutil.rmtree(spark_out)
            write_json(output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
