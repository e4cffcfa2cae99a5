"""Benchmark: batch scoring through the CLI, 100k, 1M, 2M and 4M pairs, every model.

Pairs are built from the questions of ../shared/data/quora/quora_pairs_subset.tsv (random
pairings, seeded) and written as CSV: 54k distinct questions, so each recurs often, as in
Quora-like traffic. Each model's bundle scores them with `python -m pipeline.score` in a child
process whose peak RSS is sampled. The rate is the one at 1M pairs, start-up included.
A second 1M-pair file makes every question new (the same questions, each with a distinct
" #<n>" appended): the worst case for a scorer that encodes each distinct question once, for
both speed and memory. Memory: a chunk ends at 1M rows or 400k distinct questions, and two
chunks are in flight (one scored pair by pair, one prepared ahead), so memory is bounded
whatever the file size; 100k pairs are one small chunk, 1M pairs a long and a short one, and
from 2M pairs on every run holds two long chunks at its peak, so 2M against 4M shows whether
memory grows with the input. Prints and writes reports/bench/scoring.json. Not a test:
figures depend on the machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import date

import numpy as np
import pandas as pd
import psutil
from common import ROOT, SHARED_TSV, machine

from pipeline.io import read_json, write_json


def make_pairs(n: int, seed: int = 0, all_new: bool = False) -> pd.DataFrame:
    pairs = pd.read_csv(SHARED_TSV, sep="\t", keep_default_na=False)
    questions = pd.concat([pairs["question1"], pairs["question2"]], ignore_index=True).to_numpy()
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "question1": questions[rng.integers(0, len(questions), n)],
            "question2": questions[rng.integers(0, len(questions), n)],
        }
    )
    if all_new:  # every question distinct
        frame["question1"] += " #" + pd.Series(np.arange(n)).astype(str)
        frame["question2"] += " #" + pd.Series(np.arange(n, 2 * n)).astype(str)
    return frame


def run_with_peak_rss(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of a child process."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=ROOT)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if process.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {process.returncode}")
    return time.perf_counter() - start, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models-dir",
        default="reports/bench/accuracy_run/random_glove/models",
        help="bundles to benchmark (bench/accuracy.py trains them on real data)",
    )
    parser.add_argument(
        "--models",
        nargs="*",
        default=["logreg", "siamese", "residual", "birnn_cnn", "esim", "gbdt", "ensemble"],
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the other models' figures in --output"
    )
    parser.add_argument(
        "--sizes", nargs="*", type=int, default=[100_000, 1_000_000, 2_000_000, 4_000_000]
    )
    parser.add_argument(
        "--all-new-size", type=int, default=1_000_000, help="pairs of all-new questions (0: skip)"
    )
    parser.add_argument("--work", default="reports/bench/scoring_run")
    parser.add_argument("--output", default="reports/bench/scoring.json")
    args = parser.parse_args()
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    inputs = {str(size): (size, work / f"pairs_{size}.csv", False) for size in args.sizes}
    if args.all_new_size:
        size = args.all_new_size
        inputs[f"all_new_{size}"] = (size, work / f"pairs_all_new_{size}.csv", True)
    for size, path, all_new in inputs.values():
        if not path.exists():
            make_pairs(size, all_new=all_new).to_csv(path, index=False)

    output = ROOT / args.output
    results = read_json(output)["models"] if args.merge and output.exists() else {}
    for model in args.models:
        bundle = ROOT / args.models_dir / model
        if not bundle.exists():
            print(f"skipping {model}: no bundle at {bundle}")
            continue
        results[model] = {"date": date.today().isoformat()}
        for label, (size, path, _) in inputs.items():
            seconds, peak = run_with_peak_rss(
                [
                    sys.executable,
                    "-m",
                    "pipeline.score",
                    "--model",
                    str(bundle),
                    "--input",
                    str(path),
                    "--output",
                    str(work / f"scored_{model}_{label}.csv"),
                    "--quiet",
                ]
            )
            results[model][label] = {
                "seconds": round(seconds, 1),
                "pairs_per_s": round(size / seconds),
                "peak_rss_mb": round(peak),
            }
            print(
                f"{model:<10} {label:>16} pairs: {size / seconds:>9,.0f} pairs/s, "
                f"peak RSS {peak:,.0f} MB"
            )
        by_size = results[model]
        small, large = min(args.sizes), max(args.sizes)
        # start-up (imports, loading the bundle) is paid once: the rate between the smallest
        # and largest sizes is what each extra pair costs
        extra_seconds = max(by_size[str(large)]["seconds"] - by_size[str(small)]["seconds"], 1e-9)
        headline = by_size[str(1_000_000 if 1_000_000 in args.sizes else large)]
        by_size.update(
            pairs_per_s=headline["pairs_per_s"],
            marginal_pairs_per_s=round((large - small) / extra_seconds),
            peak_rss_mb=headline["peak_rss_mb"],
            **{
                f"peak_rss_mb_at_{size // 1000}k": by_size[str(size)]["peak_rss_mb"]
                for size in args.sizes
            },
        )
    write_json(
        output,
        {
            "date": date.today().isoformat(),
            "machine": machine(),
            "sizes": args.sizes,
            "models": results,
            "note": "pairs_per_s and peak_rss_mb: 1M pairs, the whole CLI process, start-up "
            "included; marginal_pairs_per_s: the rate between the smallest and largest sizes; "
            "all_new_*: pairs whose questions are all distinct (the worst case)",
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
