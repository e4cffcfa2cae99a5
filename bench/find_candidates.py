"""Benchmark: which candidate stage finds the most known duplicates at the full release's scale.

Uses the scratch directory of bench/full_release.py (its standard-split data and the text model
of its `gbdt` bundle). The bank is every question of every split; the queries are the first
questions of a split's duplicate pairs (the query's own row skipped; a duplicate of a
duplicate counts), as in bench/find_full_release.py. Compares, by recall@10/50/100:

- `hnsw`: dupq-find's vector index (the TF-IDF rows randomly projected, HNSW), as configured;
- `tfidf_exact`: exact cosine over the full TF-IDF rows (no projection, no approximation);
- `bm25`: BM25 over the text model's words (k1 1.2, b 0.75);
- `lexical`: dupq-find's second source (`find.candidates.LexicalIndex`: the exact TF-IDF
  cosine of the bank questions sharing a query's rarer words);
- `hnsw+bm25`: a budget of n candidates, the first n/2 from HNSW, the rest from BM25's best
  where new;
- `dupq-find`: its candidates as configured (`index.lexical_share` of them from `lexical`).

Each for the val split's queries (where settings are chosen) and the test split's.
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
from pipeline.find.candidates import merge_candidates, nearest
from pipeline.find.index import QuestionEncoder
from pipeline.find.rerank import Bank, duplicate_components
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
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "settings": settings,
        "bank_questions": len(bank.texts),
    }
    tokens = text_model.tokens(pd.Series(bank.texts, dtype="string"))
    tfidf = text_model.tfidf(tokens)
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
    tfidf = (sp.diags(1 / np.maximum(norms, 1e-12)).astype(np.float32) @ tfidf).tocsr()
    counts = text_model.counts(tokens)
    bm25 = bm25_rows(counts)
    k = max(KS)
    for split in ("val", "test"):
        pairs = splits[split][splits[split]["is_duplicate"] == 1]
        first, second = normalize(pairs["question1"], form), normalize(pairs["question2"], form)
        asked = (first != second).fillna(False).to_numpy()
        queries = bank.rows_of(pd.unique(first[asked].dropna()))
        searches = {
            "hnsw": lambda q: nearest(bank.index, bank.vectors[q], k, own=q)[1],
            "tfidf_exact": lambda q: exact_top(tfidf, tfidf[q], q, k),
            "bm25": lambda q: exact_top(bm25, (counts[q] > 0).astype(np.float32), q, k),
            "lexical": lambda q: bank.lexical.search(bank.lexical.rows[q], k, q)[1],
        }
        stages, found = {}, {}
        for name, search in searches.items():
            start = time.perf_counter()
            found[name] = search(queries)
            seconds = time.perf_counter() - start
            stages[name] = {
                **recall(found[name], queries, bank.components),
                "queries_per_s": round(len(queries) / seconds),
            }
            print(split, name, stages[name], flush=True)
        # budgets of n candidates: n/2 from HNSW, the rest from BM25; and dupq-find's own
        stages["hnsw+bm25"] = {
            f"recall@{n}": recall(
                merge_candidates(found["hnsw"][:, :n], found["bm25"], n, n // 2),
                queries,
                bank.components,
            )[f"recall@{n}"]
            for n in KS
        }
        stages["dupq-find"] = {
            f"recall@{n}": recall(bank.candidates(queries, n)[1], queries, bank.components)[
                f"recall@{n}"
            ]
            for n in KS
        }
        report[split] = {"queries": len(queries), "stages": stages}
        print(split, "merged", stages["hnsw+bm25"], stages["dupq-find"], flush=True)
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
