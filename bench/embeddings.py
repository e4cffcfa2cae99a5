"""Benchmark: TF-IDF-weighted question embeddings, the 2017 Python loop vs the sparse product.

Questions of ../shared/data/quora/quora_pairs_subset.tsv are repeated to about 800k (the size
of the full release). All methods embed the same pre-tokenized questions with the same
vocabulary, idf and word vectors (random 300-d vectors: quality does not matter here, only
speed and equality). Two loops are timed on a sample, their rate per question: the 2017 code's
loop as it was written (it accumulated `vec * idf` into a (tokens, 300) array and took its mean
over rows), and a tight loop that accumulates one 300-d sum instead. Each timing is the best of
`--repeats` runs, as timeit does, for every method alike. Also timed once: the whole
featurization of all 800k questions (tokenize + vocabulary/TF-IDF fit + embed).
Writes reports/bench/embeddings.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import pandas as pd
import yaml
from common import ROOT, SHARED_TSV, best_of, machine
from gensim.models import KeyedVectors

from pipeline.io import write_json
from pipeline.text import TextConfig, normalize
from pipeline.text_model import TextModel


def loop_2017(token_lists, idf: dict, vectors: dict, dim: int) -> np.ndarray:
    """The 2017 code's loop, as written: an idf-weighted sum, built in a (tokens, dim) array.

    spaCy's `word.vector` (zeros for a word without a vector) becomes a dict lookup here,
    since tokenization is not what is timed.
    """
    zeros = np.zeros(dim, dtype=np.float32)
    out = []
    for tokens in token_lists:
        mean_vec = np.zeros([len(tokens), dim])
        for word in tokens:
            vec = vectors.get(word, zeros)
            try:
                weight = idf[word]
            except KeyError:
                weight = 0
            mean_vec += vec * weight
        out.append(mean_vec.mean(axis=0))
    return np.array(out)


def tight_loop(token_lists, idf: dict, vectors: dict, dim: int) -> np.ndarray:
    """A leaner loop: one 300-d running sum per question, divided by the weight sum."""
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
    parser.add_argument("--loop-sample", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="reports/bench/embeddings.json")
    args = parser.parse_args()

    pairs = pd.read_csv(args.data, sep="\t", keep_default_na=False)
    base = pd.concat([pairs["question1"], pairs["question2"]], ignore_index=True)
    questions = pd.Series(np.resize(base.to_numpy(dtype=object), args.questions))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    text = TextConfig.from_dict(params["text"])

    start = time.perf_counter()
    cleaned = normalize(questions)
    probe = TextModel.fit(cleaned, text, KeyedVectors(1), max_len=1)  # vocabulary only
    rng = np.random.default_rng(0)
    kv = KeyedVectors(300)
    kv.add_vectors(list(probe.vocab), rng.normal(size=(len(probe.vocab), 300)).astype(np.float32))
    model = TextModel.fit(cleaned, text, kv, max_len=params["features"]["max_len"])
    tokens = model.tokens(cleaned)
    embeddings, _ = model.embed(tokens)
    stage_seconds = time.perf_counter() - start
    print(f"featurized {len(questions):,} questions end to end in {stage_seconds:.1f} s")

    del embeddings
    (vectorized, _), vectorized_seconds = best_of(args.repeats, lambda: model.embed(tokens))

    sample = tokens.slice(0, args.loop_sample).to_pylist()
    idf = dict(zip(model.vocab.tolist(), model.idf.tolist(), strict=True))
    vectors = {w: model.vectors[i] for i, w in enumerate(model.vocab.tolist())}
    summed, loop_seconds = best_of(args.repeats, lambda: loop_2017(sample, idf, vectors, 300))
    tight, tight_seconds = best_of(args.repeats, lambda: tight_loop(sample, idf, vectors, 300))
    # the 2017 loop sums; the pipeline's embedding is that sum over the weight sum
    weight_sums = np.array([sum(idf[t] for t in q if t in vectors) for q in sample])
    assert np.allclose(summed / weight_sums[:, None], vectorized[: len(sample)], atol=1e-4)
    assert np.allclose(tight, vectorized[: len(sample)], atol=1e-4), "methods disagree"

    loop_qps = len(sample) / loop_seconds
    tight_qps = len(sample) / tight_seconds
    vectorized_qps = len(questions) / vectorized_seconds
    result = {
        "questions": len(questions),
        "loop_questions_timed": len(sample),
        "repeats": args.repeats,
        "loop_qps": round(loop_qps),
        "vectorized_qps": round(vectorized_qps),
        "speedup": round(vectorized_qps / loop_qps, 1),
        "tight_loop_qps": round(tight_qps),
        "speedup_vs_tight_loop": round(vectorized_qps / tight_qps, 1),
        "stage_seconds_800k": round(stage_seconds, 2),
        "vocab_size": len(model.vocab),
        "same_vectors": True,
        "date": date.today().isoformat(),
        "machine": machine(),
    }
    write_json(args.output, result)
    print(
        f"2017 loop: {loop_qps:,.0f} questions/s   tight loop: {tight_qps:,.0f} questions/s   "
        f"sparse product: {vectorized_qps:,.0f} questions/s   speedup x{result['speedup']} "
        f"(x{result['speedup_vs_tight_loop']} over the tight loop)"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
