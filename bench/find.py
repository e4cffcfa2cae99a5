"""Benchmark: finding the duplicates of new questions among 100k and 1M known ones.

Uses the pipeline run of bench/accuracy.py on the real subset (its splits and bundles; run
`python bench/accuracy.py --splits random --vectors glove --seeds 42 --models logreg gbdt
birnn_cnn esim ensemble --work reports/bench/find_run --output
reports/bench/find_run/accuracy.json` first, as `make bench` does). Measures:

- retrieval on the real subset (every question of every split in the bank, the test split's
  known duplicates as queries): recall@k of the HNSW candidates, of exact search with the same
  vectors, and after re-ranking by each model, as the `index` stage does;
- for banks of 100k and 1M questions (the subset's questions plus generated variants of them,
  each a real question with two of its own words repeated at the end): the HNSW build time,
  index bytes per question, and end-to-end latency of single queries (normalize, embed,
  search, re-rank the candidates) as p50/p99, and the throughput of the same queries at once.

Prints and writes reports/bench/find.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import pandas as pd
import yaml
from common import ROOT, machine

from pipeline.bundle import load_bundle
from pipeline.find.evaluate import evaluate_retrieval
from pipeline.find.index import SETTINGS, QuestionIndex
from pipeline.find.search import Finder
from pipeline.io import write_json


def generated_bank(questions: pd.Series, size: int, seed: int = 0) -> pd.Series:
    """`size` distinct questions: the real ones, then variants of them."""
    rng = np.random.default_rng(seed)
    base = pd.Series(questions.unique(), dtype="string")
    if size <= len(base):
        return base.iloc[:size].reset_index(drop=True)
    extra = size - len(base)
    picked = base.iloc[rng.integers(0, len(base), extra)].reset_index(drop=True)
    tail = picked.str.split().str[-2:].str.join(" ")
    variants = picked + " " + tail + " " + pd.Series(np.arange(extra)).astype(str)
    return pd.concat([base, variants], ignore_index=True)


def timed_index(bank: pd.Series, bundle, settings: dict, blend: float = 0.0):
    """(index, its build time and bytes per question) of a bank of questions."""
    import faiss

    start = time.perf_counter()
    index = QuestionIndex.build(bank, None, bundle, settings, blend)
    figures = {
        "questions": len(index.bank),
        "build_seconds": round(time.perf_counter() - start, 1),
        "index_bytes_per_question": round(
            faiss.serialize_index(index.index).nbytes / len(index.bank)
        ),
    }
    return index, figures


def latency(finder: Finder, queries: pd.Series, top_k: int) -> dict:
    times = []
    for query in queries:
        start = time.perf_counter()
        finder.find([query], top_k)
        times.append(time.perf_counter() - start)
    times_ms = np.array(times) * 1000
    start = time.perf_counter()
    batch = queries.iloc[: min(2000, len(queries))]
    finder.find(batch, top_k)
    batch_seconds = time.perf_counter() - start
    return {
        "p50_ms": round(float(np.percentile(times_ms, 50)), 1),
        "p99_ms": round(float(np.percentile(times_ms, 99)), 1),
        "single_queries": len(queries),
        "batch_queries_per_s": round(len(batch) / batch_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="reports/bench/find_run/random_glove")
    parser.add_argument("--models", nargs="+", default=["logreg", "gbdt", "ensemble"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--output", default="reports/bench/find.json")
    args = parser.parse_args()
    run = ROOT / args.run
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = {key: params["index"][key] for key in SETTINGS}
    top_k = params["index"]["top_k"]
    processed = run / "processed"  # bench/accuracy.py's scratch layout
    splits = {s: pd.read_parquet(processed / f"{s}.parquet") for s in ("train", "val", "test")}
    bundles = {name: load_bundle(run / "models" / name) for name in args.models}
    first = next(iter(bundles.values()))  # every bundle of the run has the same text model
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "settings": settings,
        "top_k": top_k,
        "retrieval": {},
        "candidates_by_vectors": {},
        "banks": {},
    }
    for name, bundle in bundles.items():
        report["retrieval"][name] = evaluate_retrieval(bundle, settings, splits)
        print(name, report["retrieval"][name])
    for vectors in ("tfidf", "embedding"):  # what the candidates find, by vector kind
        figures = evaluate_retrieval(first, {**settings, "vectors": vectors}, splits)
        report["candidates_by_vectors"][vectors] = {
            "candidates": figures["candidates"],
            "exact": figures["exact"],
        }
        print(vectors, report["candidates_by_vectors"][vectors])

    every = pd.concat([splits[s][c] for s in splits for c in ("question1", "question2")])
    test = splits["test"]
    queries = test["question1"].iloc[: args.queries].reset_index(drop=True)
    for size in args.sizes:
        index, figures = timed_index(generated_bank(every, size), first, settings)
        figures["models"] = {}
        for name, bundle in bundles.items():
            blend = report["retrieval"][name]["blend"]
            finder = Finder(index, bundle, settings["candidates"], blend)
            finder.find(queries.iloc[:5], top_k)  # warm-up: the first calls trace graphs
            figures["models"][name] = latency(finder, queries, top_k)
            print(size, name, figures["models"][name])
        report["banks"][str(size)] = figures
        del index
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
