"""The vectorized pair features against slow per-pair reference loops."""

import math
import re

import numpy as np
import pandas as pd
import pytest
from gensim.models import KeyedVectors
from rapidfuzz import fuzz

from pipeline.lexicon import ANTONYMS
from pipeline.pair_features import (
    CHAR_BUCKETS,
    CHAR_NGRAMS,
    FEATURE_NAMES,
    JOINING_WORDS,
    QUESTION_WORDS,
    RELATING_WORDS,
    SIMILARITY_TOKENS,
    QuestionTable,
    fit_char_idf,
    pair_features,
    unit_word_vectors,
)
from pipeline.text import TextConfig, token_lists
from pipeline.text_model import TextModel

TRAIN = [
    "How do I learn Python in 2024?",
    "What is the best way to learn Python?",
    "Why is Rust hard to learn?",
    "Is Rust harder than C++?",
    "Which is the best laptop under 500 dollars?",
    "Where can I buy a laptop for 300 dollars?",
]
PAIRS = [
    ("How do I learn Python in 2024?", "What is the best way to learn Python in 2025?"),
    ("Why is Rust hard to learn?", "Is Rust harder than C++?"),
    ("Which is the best laptop under 500 dollars?", "Which laptop is best under 500 dollars?"),
    ("Where can I buy a laptop?", "Qué es Python?"),  # no shared word, accents
    ("Is C++ hard?", "Is C++ hard?"),
    ("Is Rust harder than Python?", "Is Python harder than Rust?"),  # every word shared
    ("Should I learn Rust or Python?", "Should I learn Python or Rust?"),
    ("Rust, or Python?", "Rust or Python"),  # the same words in the same order
    ("Is Rust better or worse than C++?", "Why isn't Rust worse than C++? I can't tell"),
    ("How do I move from Rust to C++ and Python?", "How do I move from C++ and Python to Rust?"),
]


@pytest.fixture(scope="module")
def model():
    words = sorted({w for q in TRAIN for w in token_lists(TRAIN)[TRAIN.index(q)]})
    kv = KeyedVectors(4)
    rng = np.random.default_rng(0)
    with_vectors = [w for w in words if w not in ("rust", "?")]  # some words lack a vector
    kv.add_vectors(with_vectors, rng.normal(size=(len(with_vectors), 4)).astype(np.float32))
    return TextModel.fit(pd.Series(TRAIN), TextConfig(), kv, max_len=12)


def reference_char_counts(text: str) -> dict[int, int]:
    """The byte n-gram hashing of `char_counts`, one window at a time in Python integers."""
    data = f" {text.lower()} ".encode()
    counts: dict[int, int] = {}
    for n in CHAR_NGRAMS:
        for start in range(len(data) - n + 1):
            h = 0
            for byte in data[start : start + n]:
                h = (h * 1_099_511_628_211 + byte) % 2**64
            mixed = ((h + n) * 0x9E3779B97F4A7C15) % 2**64
            bucket = mixed >> (64 - CHAR_BUCKETS.bit_length() + 1)
            counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def cosine(u: dict, v: dict) -> float:
    dot = sum(value * v.get(key, 0.0) for key, value in u.items())
    norm = math.sqrt(sum(x * x for x in u.values())) * math.sqrt(sum(x * x for x in v.values()))
    return dot / norm if norm else 0.0


def reference_features(q1: str, q2: str, model: TextModel, train_docs: list[dict]) -> dict:
    idf = dict(zip(model.vocab, model.idf, strict=True))
    n_docs = len(train_docs)
    doc_freq: dict[int, int] = {}
    for doc in train_docs:
        for bucket in doc:
            doc_freq[bucket] = doc_freq.get(bucket, 0) + 1

    def char_tfidf(text):
        return {
            b: (1 + math.log(c)) * (math.log((1 + n_docs) / (1 + doc_freq.get(b, 0))) + 1)
            for b, c in reference_char_counts(text).items()
        }

    tokens = [token_lists([q])[0] for q in (q1, q2)]
    word_tfidf = [{} for _ in tokens]
    for weights, toks in zip(word_tfidf, tokens, strict=True):
        for t in toks:
            if t in idf:
                weights[t] = weights.get(t, 0.0) + idf[t]
    sets = [{t for t in toks if t in idf} for toks in tokens]
    both, either = sets[0] & sets[1], sets[0] | sets[1]
    idf_both = sum(idf[t] for t in both)
    idf_either = sum(idf[t] for t in either)
    numbers = [{t for t in toks if t.isdigit()} for toks in tokens]
    question_words = [next((t for t in toks if t in QUESTION_WORDS), None) for toks in tokens]
    vectors = {w: v for w, v in zip(model.vocab, model.vectors, strict=True) if np.any(v)}

    def embedding(toks):
        known = [t for t in toks if t in vectors]
        if not known:
            return np.zeros(model.dim)
        weights = np.array([idf[t] for t in known])
        return (weights[:, None] * np.array([vectors[t] for t in known])).sum(0) / weights.sum()

    e1, e2 = embedding(tokens[0]), embedding(tokens[1])
    unit = {w: v / np.linalg.norm(v) for w, v in vectors.items()}
    known = [[t for t in toks[: model.max_len] if t in unit][:SIMILARITY_TOKENS] for toks in tokens]
    sims = np.array([[unit[a] @ unit[b] for b in known[1]] for a in known[0]])
    if sims.size:
        align = (sims.max(axis=1).mean(), sims.max(axis=0).mean())
        similarity = {
            "word_similarity_mean": sims.mean(),
            "word_similarity_max": sims.max(),
            "word_alignment_mean": sum(align) / 2,
            "word_alignment_min": min(align),
        }
    else:
        similarity = dict.fromkeys(
            ("word_similarity_mean", "word_similarity_max", "word_alignment_mean"), 0.0
        )
        similarity["word_alignment_min"] = 0.0
    words = [[t for t in toks if re.search(r"[\w&]", t)] for toks in tokens]
    bigrams = [set(zip(ws, ws[1:], strict=False)) for ws in words]
    bigrams_either = bigrams[0] | bigrams[1]
    unshared = bigrams[0] ^ bigrams[1]

    def unshared_share(words):
        return (
            sum(1 for pair in unshared if set(pair) & set(words)) / len(unshared)
            if unshared
            else 0.0
        )

    negations = [
        len(re.findall(r"\b(?:not|never|no|cannot|none|nothing|nobody)\b|n['\u2019]t\b", q.lower()))
        for q in (q1, q2)
    ]
    sides = [[(x in toks) - (y in toks) for x, y in ANTONYMS] for toks in tokens]
    lengths = [len(q1), len(q2)]
    n_tokens = [len(t) for t in tokens]
    lower = (q1.lower(), q2.lower())
    norms = np.linalg.norm(e1) * np.linalg.norm(e2)
    return {
        "word_tfidf_cosine": cosine(*word_tfidf),
        "char_tfidf_cosine": cosine(char_tfidf(q1), char_tfidf(q2)),
        "shared_word_share": len(both) / len(either) if either else 0.0,
        "shared_idf_share": idf_both / idf_either if idf_either else 0.0,
        "shared_bigram_share": (
            len(bigrams[0] & bigrams[1]) / len(bigrams_either) if bigrams_either else 0.0
        ),
        "unshared_bigrams_joining": unshared_share(JOINING_WORDS),
        "unshared_bigrams_relating": unshared_share(RELATING_WORDS),
        "negations_abs_diff": abs(negations[0] - negations[1]),
        "antonyms_across": sum(a * b == -1 for a, b in zip(*sides, strict=True)),
        "fuzz_ratio": fuzz.ratio(*lower) / 100,
        "fuzz_partial_ratio": fuzz.partial_ratio(*lower) / 100,
        "fuzz_token_sort_ratio": fuzz.token_sort_ratio(*lower) / 100,
        "fuzz_token_set_ratio": fuzz.token_set_ratio(*lower) / 100,
        "chars_min": min(lengths),
        "chars_max": max(lengths),
        "chars_abs_diff": abs(lengths[0] - lengths[1]),
        "tokens_min": min(n_tokens),
        "tokens_max": max(n_tokens),
        "tokens_abs_diff": abs(n_tokens[0] - n_tokens[1]),
        "same_first_word": tokens[0][0] == tokens[1][0],
        "both_question_word": None not in question_words,
        "same_question_word": question_words[0] == question_words[1] is not None,
        "numbers_in_one_only": len(numbers[0] ^ numbers[1]),
        "numbers_in_both": len(numbers[0] & numbers[1]),
        "embedding_cosine": float(e1 @ e2 / norms) if norms else 0.0,
        "embedding_euclidean": float(np.linalg.norm(e1 - e2)),
        **similarity,
    }


def test_pair_features_match_a_slow_reference(model):
    char_idf = fit_char_idf(pd.Series(TRAIN), model)
    questions = pd.Series(sorted({q for pair in PAIRS for q in pair}), dtype="string")
    table = QuestionTable.build(questions, model, char_idf)
    index = {q: i for i, q in enumerate(questions)}
    first = np.array([index[a] for a, _ in PAIRS])
    second = np.array([index[b] for _, b in PAIRS])
    features = pair_features(table[first], table[second], unit_word_vectors(model))
    assert features.shape == (len(PAIRS), len(FEATURE_NAMES))
    train_docs = [reference_char_counts(q) for q in TRAIN]
    for row, (q1, q2) in enumerate(PAIRS):
        expected = reference_features(q1, q2, model, train_docs)
        for column, name in enumerate(FEATURE_NAMES):
            assert features[row, column] == pytest.approx(float(expected[name]), abs=1e-5), (
                row,
                name,
            )
    swapped = pair_features(table[second], table[first], unit_word_vectors(model))
    assert np.allclose(features, swapped, atol=1e-6)  # symmetric in the two questions


def test_with_spelling_a_typo_changes_no_pair_feature(model):
    from dataclasses import replace

    from pipeline.spelling import MIN_RATIO

    # every word far more frequent than a typo; and, as in any real train split, a word seen
    # once (what tells the text model how rare an unseen word is)
    train = pd.Series([*TRAIN * MIN_RATIO, "Zyzzyva"])
    spelling = TextModel.fit(train, TextConfig(), model_vectors(model), max_len=12, spelling=True)
    char_idf = fit_char_idf(train, spelling)
    questions = ["Which is the best laptop?", "Whcih is the best lpatop?", "Where can I buy one?"]
    table = QuestionTable.build(pd.Series(questions, dtype="string"), spelling, char_idf)
    unit = unit_word_vectors(spelling)
    exact, typo = (pair_features(table[[i]], table[[2]], unit) for i in (0, 1))
    assert np.array_equal(exact, typo)  # a swap of two letters keeps even the length
    without = replace(spelling, spelling=False)
    plain = QuestionTable.build(pd.Series(questions, dtype="string"), without, char_idf)
    assert not np.array_equal(*(pair_features(plain[[i]], plain[[2]], unit) for i in (0, 1)))


def model_vectors(model):
    kv = KeyedVectors(model.dim)
    known = model.known > 0
    kv.add_vectors(list(model.vocab[known]), model.vectors[known])
    return kv


def test_char_ngram_hashing_does_not_depend_on_how_texts_are_sliced(model):
    import pyarrow as pa

    from pipeline.pair_features import char_counts

    texts = pa.array(["ab", "", "héllo wörld", "C++ & C#?"] * 3)
    whole = char_counts(texts)
    part = char_counts(texts.slice(4, 5))  # an Arrow slice: its buffers start elsewhere
    assert (whole[4:9] != part).nnz == 0
    assert whole[1].nnz == 1  # "" is "  ": one 2-gram


def test_a_pair_gets_the_same_features_in_any_company():
    # a score must not depend on the other pairs of its file: with 300-d vectors, the
    # cosine matrix's product summed in another order when the batch's widest question
    # changed, and LightGBM split on that float noise (a probability moved by 0.25)
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)]
    kv = KeyedVectors(300)
    kv.add_vectors(words, rng.normal(size=(len(words), 300)).astype(np.float32))
    questions = [" ".join(rng.choice(words, size=rng.integers(2, 25))) + "?" for _ in range(400)]
    model = TextModel.fit(pd.Series(questions), TextConfig(), kv, max_len=30)
    table = QuestionTable.build(pd.Series(questions, dtype="string"), model, np.ones(CHAR_BUCKETS))
    unit = unit_word_vectors(model)
    first, second = np.arange(0, 400, 2), np.arange(1, 400, 2)
    together = pair_features(table[first], table[second], unit)
    for row in range(0, 200, 7):
        alone = pair_features(table[first[[row]]], table[second[[row]]], unit)
        assert np.array_equal(alone[0], together[row]), row
