"""Benchmark: TF-IDF-weighted question embeddings, the 2017 Python loop vs the sparse product.

Questions of ../shared/data/quora/quora_pairs_subset.tsv are repeated to about 800k (the size
of the full release). Both methods embed the same pre-tokenized questions with the same
vocabulary, idf and word vectors (random 300-d vectors: quality does not matter here, only
speed and equality); the loop runs on a sample and its rate is per question. Also timed: the
whole featurization of all 800k questions (tokenize + vocabulary/TF-IDF fit + embed).
Writes reports/bench/embeddings.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from common import SHARED_TSV, machine
from gensim.models import KeyedVectors

from pipeline.featurize import TextModel
from pipeline.io import write_json
from pipeline.text import TextConfig, normalize


def loop_embed(token_lists, idf: dict, vectors: dict, dim: int) -> np.ndarray:
    """The original approach: for each question, for each token, accumulate idf * vector."""
    out = np.zeros((len(token_lists), dim), dtype=np.float32)
    for row, tokens in enumerate(token_lists):
        total, weight_sum = np.zeros(dim, dtype=np.float64), 0.0
        for token in tokens:
            if token in vectors:
                weight = idf[token]
                total += weight * vectors[token]
                weight_sum += weight
        if weight_sum > 0:
            out[row] = total / weight_sum
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_TSV))
    parser.add_argument("--questions", type=int, default=800_000)
    parser.add_argument("--loop-sample", type=int, default=50_000)
    parser.add_argument("--output", default="reports/bench/embeddings.json")
    args = parser.parse_args()

    pairs = pd.read_csv(args.data, sep="\t", keep_default_na=False)
    base = pd.concat([pairs["question1"], pairs["question2"]], ignore_index=True)
    questions = pd.Series(np.resize(base.to_numpy(dtype=object), args.questions))
    text = TextConfig()

    start = time.perf_counter()
    cleaned = normalize(questions)
    probe = TextModel.fit(cleaned, text, KeyedVectors(1), max_len=1)  # vocabulary only
    rng = np.random.default_rng(0)
    kv = KeyedVectors(300)
    kv.add_vectors(list(probe.vocab), rng.normal(size=(len(probe.vocab), 300)).astype(np.float32))
    model = TextModel.fit(cleaned, text, kv)
    tokens = model.tokens(cleaned)
    embeddings, _ = model.embed(tokens)
    stage_seconds = time.perf_counter() - start
    print(f"featurized {len(questions):,} questions end to end in {stage_seconds:.1f} s")

    start = time.perf_counter()
    vectorized, _ = model.embed(tokens)
    vectorized_seconds = time.perf_counter() - start

    sample = tokens.slice(0, args.loop_sample).to_pylist()
    idf = dict(zip(model.vocab.tolist(), model.idf.tolist(), strict=True))
    vectors = {w: model.vectors[i] for i, w in enumerate(model.vocab.tolist())}
    start = time.perf_counter()
    looped = loop_embed(sample, idf, vectors, model.dim)
    loop_seconds = time.perf_counter() - start
    assert np.allclose(looped, vectorized[: len(sample)], atol=1e-4), "methods disagree"

    loop_qps = len(sample) / loop_seconds
    vectorized_qps = len(questions) / vectorized_seconds
    result = {
        "questions": len(questions),
        "loop_questions_timed": len(sample),
        "loop_qps": round(loop_qps),
        "vectorized_qps": round(vectorized_qps),
        "speedup": round(vectorized_qps / loop_qps, 1),
        "stage_seconds_800k": round(stage_seconds, 2),
        "vocab_size": len(model.vocab),
        "same_vectors": True,
        "machine": machine(),
    }
    write_json(args.output, result)
    print(
        f"loop: {loop_qps:,.0f} questions/s   sparse product: {vectorized_qps:,.0f} "
        f"questions/s   speedup x{result['speedup']}"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
