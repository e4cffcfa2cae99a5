"""Benchmark: which candidate stage finds the most known duplicates at the full release's scale.

Uses the scratch directory of bench/full_release.py (its standard-split data and the text model
of its `gbdt` bundle). The bank is every question of every split; the queries are the first
questions of the test split's duplicate pairs (the query's own row skipped; a duplicate of a
duplicate counts), as in bench/find_full_release.py. Compares, by recall@10/50/100:

- `hnsw`: dupq-find's candidates (the TF-IDF rows randomly projected, HNSW), as configured;
- `tfidf_exact`: exact cosine over the full TF-IDF rows (no projection, no approximation);
- `bm25`: BM25 over the text model's words (k1 1.2, b 0.75);
- `hnsw+bm25`: a budget of n candidates, the first n/2 from HNSW, the rest from BM25's best
  where new.

Writes reports/bench/find_candidates.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml
from common import ROOT, machine

from pipeline.bundle import load_bundle
from pipeline.find.index import QuestionEncoder
from pipeline.find.rerank import Bank, duplicate_components, nearest_others
from pipeline.io import write_json
from pipeline.text import normalize

KS = (10, 50, 100)
CHUNK = 128  # queries scored against the whole bank at once: (bank, 128) float32 scores


def exact_top(bank_rows: sp.csr_matrix, query_rows: sp.csr_matrix, own: np.ndarray, k: int):
    """The k best bank rows of each query by the dot product of its row, its own row left out."""
    tops = []
    for start in range(0, query_rows.shape[0], CHUNK):
        block = query_rows[start : start + CHUNK]
        scores = np.ascontiguousarray((bank_rows @ block.T.toarray()).T)  # (chunk, bank)
        scores[np.arange(len(block.indptr) - 1), own[start : start + CHUNK]] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        tops.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(tops)


def bm25_rows(counts: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Each bank question's BM25 weight per word (idf from the bank itself)."""
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    length = np.asarray(counts.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * length / max(length.mean(), 1))
    weights = counts.astype(np.float32).tocoo()
    tf = weights.data
    weights.data = (tf * (k1 + 1) / (tf + norm[weights.row]) * idf[weights.col]).astype(np.float32)
    return weights.tocsr()


def merged(first: np.ndarray, second: np.ndarray, budget: int) -> np.ndarray:
    """Half the budget from `first`'s best, the rest from `second`'s best rows not among
    them (then `first`'s next ones, if `second` runs short)."""
    half = budget // 2
    combined = np.concatenate([first[:, :half], second, first[:, half:]], axis=1)
    order = np.argsort(combined, axis=1, kind="stable")  # a repeat sorts after its first
    in_order = np.take_along_axis(combined, order, axis=1)
    repeat = np.zeros(combined.shape, dtype=bool)
    repeat[:, 1:] = in_order[:, 1:] == in_order[:, :-1]
    seen_before = np.empty_like(repeat)
    np.put_along_axis(seen_before, order, repeat, axis=1)
    keep = ~seen_before
    slot = np.cumsum(keep, axis=1) - 1
    keep &= slot < budget
    out = np.full((len(first), budget), -1, dtype=np.int64)
    out[np.nonzero(keep)[0], slot[keep]] = combined[keep]
    return out


def recall(rows: np.ndarray, queries: np.ndarray, components: np.ndarray) -> dict:
    found = (rows >= 0) & (components[np.maximum(rows, 0)] == components[queries, None])
    return {f"recall@{k}": round(float(found[:, :k].any(axis=1).mean()), 4) for k in KS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="reports/bench/full_release_run")
    parser.add_argument("--model", default=None, help="its text model (default: index.model)")
    parser.add_argument("--output", default="reports/bench/find_candidates.json")
    args = parser.parse_args()
    work = ROOT / args.work
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["index"]
    splits = {
        s: pd.read_parquet(work / "processed" / f"{s}.parquet") for s in ("train", "val", "test")
    }
    bundle = load_bundle(work / "models" / (args.model or settings["model"]))
    text_model, form = bundle.text_model, bundle.text_model.text.unicode_form
    every = normalize(
        pd.concat([f[c] for f in splits.values() for c in ("question1", "question2")]), form
    )
    bank = Bank.build(
        every,
        QuestionEncoder.for_settings(text_model, settings),
        settings,
        duplicate_components(splits.values(), form),
    )
    test = splits["test"][splits["test"]["is_duplicate"] == 1]
    first, second = normalize(test["question1"], form), normalize(test["question2"], form)
    asked = (first != second).fillna(False).to_numpy()
    queries = bank.rows_of(pd.unique(first[asked].dropna()))
    k = max(KS)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "settings": settings,
        "bank_questions": len(bank.texts),
        "queries": len(queries),
        "stages": {},
    }
    timed = {}
    start = time.perf_counter()
    hnsw = nearest_others(bank.index, bank.vectors, queries, k)[1]
    timed["hnsw"] = time.perf_counter() - start
    tokens = text_model.tokens(pd.Series(bank.texts, dtype="string"))
    tfidf = text_model.tfidf(tokens)
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
    tfidf = sp.diags(1 / np.maximum(norms, 1e-12)).astype(np.float32) @ tfidf
    start = time.perf_counter()
    exact = exact_top(tfidf.tocsr(), tfidf[queries], queries, k)
    timed["tfidf_exact"] = time.perf_counter() - start
    counts = text_model.counts(tokens)
    presence = (counts[queries] > 0).astype(np.float32)
    start = time.perf_counter()
    bm25 = exact_top(bm25_rows(counts), presence, queries, k)
    timed["bm25"] = time.perf_counter() - start
    for name, rows in (("hnsw", hnsw), ("tfidf_exact", exact), ("bm25", bm25)):
        report["stages"][name] = {
            **recall(rows, queries, bank.components),
            "queries_per_s": round(len(queries) / timed[name]),
        }
        print(name, report["stages"][name])
    # a budget of n candidates: n/2 from HNSW, the rest from BM25
    report["stages"]["hnsw+bm25"] = {
        f"recall@{n}": recall(merged(hnsw[:, :n], bm25, n), queries, bank.components)[f"recall@{n}"]
        for n in KS
    }
    print("hnsw+bm25", report["stages"]["hnsw+bm25"])
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
