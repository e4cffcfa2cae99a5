"""Benchmark: finding duplicates at the full release's scale, with the learned re-ranker.

Uses the scratch directory of bench/full_release.py (its standard-split data and bundles; run
it first). Measures:

- the re-ranker's training (train questions with known duplicates as queries, rounds chosen
  on val's), its time and the process's peak memory;
- retrieval on the test split's queries with every question of every split in the bank (the
  query's own row skipped; duplicates of duplicates count): recall@k and MRR of the nearest
  questions, of exact search, of the pair model alone, of its blend with the index score, and
  of the learned re-ranker; the precision of each one's `duplicate` flag on the top hit;
- banks of every distinct train question (about 500k) and of 1M (those plus generated variants
  of them): build time, index bytes per question, single-query latency p50/p99 end to end
  (normalize, embed, search, re-rank) and the same queries at once, with the learned re-ranker
  and with the blend alone.

Writes reports/bench/find_full_release.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from datetime import date

import pandas as pd
import yaml
from common import ROOT, machine
from find import generated_bank, latency, timed_index

from pipeline.bundle import load_bundle
from pipeline.find.evaluate import evaluate_retrieval
from pipeline.find.rerank import fit_reranker
from pipeline.find.search import Finder
from pipeline.io import write_json
from pipeline.text import normalize


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="reports/bench/full_release_run")
    parser.add_argument("--model", default=None, help="re-ranking bundle (default: index.model)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[1_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("-S", "--set", action="append", default=[], help="index.key=value")
    parser.add_argument("--output", default="reports/bench/find_full_release.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = ROOT / args.work
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["index"]
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals or key not in settings:
            parser.error(f"-S {item!r}: expected KEY=VALUE with KEY one of index's keys")
        settings[key] = yaml.safe_load(value)
    model = args.model or settings["model"]
    splits = {
        s: pd.read_parquet(work / "processed" / f"{s}.parquet") for s in ("train", "val", "test")
    }
    bundle = load_bundle(work / "models" / model)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "work": args.work,
        "model": model,
        "settings": settings,
        "pairs": {name: len(frame) for name, frame in splits.items()},
    }
    start = time.perf_counter()
    reranker, report["reranker"] = fit_reranker(bundle, settings, splits)
    report["reranker"]["peak_rss_mb"] = peak_rss_mb()
    print("re-ranker", report["reranker"], f"{time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    report["retrieval"] = evaluate_retrieval(bundle, settings, splits, reranker=reranker)
    report["retrieval"]["seconds"] = round(time.perf_counter() - start, 1)
    print("retrieval", report["retrieval"])

    train = splits["train"]
    form = bundle.text_model.text.unicode_form
    train_questions = pd.Series(
        pd.unique(normalize(pd.concat([train["question1"], train["question2"]]), form).dropna()),
        dtype="string",
    )
    queries = splits["test"]["question1"].iloc[: args.queries].reset_index(drop=True)
    report["banks"] = {}
    for size in [len(train_questions), *args.sizes]:
        bank = generated_bank(train_questions, size)
        index, figures = timed_index(bank, bundle, settings, report["retrieval"]["blend"])
        figures["ranking"] = {}
        for ranking, learned in (("learned", reranker), ("blend", None)):
            index.reranker = learned
            finder = Finder(index, bundle, settings["candidates"], report["retrieval"]["blend"])
            finder.find(queries.iloc[:5], settings["top_k"])  # warm-up
            figures["ranking"][ranking] = latency(finder, queries, settings["top_k"])
            print(size, ranking, figures["ranking"][ranking])
        figures["peak_rss_mb"] = peak_rss_mb()  # of the run so far
        report["banks"][str(len(index.bank))] = figures
        del index
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
