"""The candidate stage: the lexical source's exact cosine, the merge of two candidate lists,
and an index that keeps the lexical source through build, add, save and load."""

import numpy as np
import pandas as pd
import pytest
from conftest import INDEX_SETTINGS
from gensim.models import KeyedVectors

from pipeline.bundle import load_bundle
from pipeline.find.candidates import LexicalIndex, candidates, merge_candidates, nearest
from pipeline.find.index import QuestionEncoder, QuestionIndex, new_faiss_index
from pipeline.text import TextConfig
from pipeline.text_model import TextModel

QUESTIONS = [
    "how do i learn python quickly",
    "how can i learn python fast",
    "what is the best way to learn python",
    "how do i lose weight quickly",
    "what is the capital of france",
    "what is the capital city of france",
    "why is the sky blue",
    "how do i cook rice",
    "how do i cook pasta",
    "which laptop is best for programming",
]


@pytest.fixture(scope="module")
def text_model():
    words = sorted({w for q in QUESTIONS for w in q.split()})
    vectors = KeyedVectors(4)
    vectors.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 4)))
    return TextModel.fit(pd.Series(QUESTIONS), TextConfig(), vectors, max_len=8)


def brute_force(unit, own, k):
    """Every bank row's exact cosine with each query, the query's own row and rows sharing
    no word left out: the reference the inverted index must equal."""
    scores = (unit[own] @ unit.T).toarray()
    scores[np.arange(len(own)), own] = 0
    return [
        {int(r): scores[i, r] for r in np.argsort(-scores[i], kind="stable")[:k] if scores[i, r]}
        for i in range(len(own))
    ]


def test_the_lexical_source_finds_the_exact_cosines_best(text_model):
    lexical = LexicalIndex(text_model, max_df=0.999)  # every word gathers candidates
    lexical.add(pd.Series(QUESTIONS, dtype="string"))
    own = np.arange(len(QUESTIONS))
    cosine, rows = lexical.search(lexical.rows, 3, own)
    for i, expected in enumerate(brute_force(lexical.rows, own, 3)):
        got = {int(r): c for r, c in zip(rows[i], cosine[i], strict=True) if r >= 0}
        assert got.keys() == expected.keys() and i not in got
        assert np.allclose([got[r] for r in expected], list(expected.values()), atol=1e-6)
    assert (rows[:, 0] >= 0).all()


def test_common_words_gather_no_candidates_but_count_in_the_cosine(text_model):
    lexical = LexicalIndex(text_model, max_df=0.25)  # here: "how", "do", "i", "what", "is"...
    lexical.add(pd.Series(QUESTIONS, dtype="string"))
    common_only = lexical.unit_rows(pd.Series(["how do i"], dtype="string"))
    assert (lexical.search(common_only, 5)[1] == -1).all()
    query = lexical.unit_rows(pd.Series(["how do i cook rice"], dtype="string"))
    cosine, rows = lexical.search(query, 2)
    assert rows[0].tolist() == [7, 8] and cosine[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert cosine[0, 1] == pytest.approx((query @ lexical.rows[8].T).toarray()[0, 0], abs=1e-6)


def test_merging_two_lists_keeps_each_row_once_in_the_promised_order():
    rng = np.random.default_rng(0)
    for _ in range(200):
        first, second = (rng.integers(-1, 30, size=(1, 12)) for _ in range(2))
        budget, from_first = int(rng.integers(1, 13)), int(rng.integers(0, 13))
        expected = []
        for row in [*first[0, :from_first], *second[0], *first[0, from_first:]]:
            if row >= 0 and row not in expected and len(expected) < budget:
                expected.append(row)
        expected += [-1] * (budget - len(expected))
        assert merge_candidates(first, second, budget, from_first)[0].tolist() == expected


def test_merged_candidates_skip_the_query_and_score_by_the_vector_index(text_model):
    texts = pd.Series(QUESTIONS, dtype="string")
    encoder = QuestionEncoder.for_settings(text_model, {**INDEX_SETTINGS, "tfidf_dim": 4})
    vectors = encoder.vectors(texts)
    index = new_faiss_index(vectors.shape[1], {"kind": "flat"})
    index.add(vectors)
    lexical = LexicalIndex(text_model, max_df=0.999)
    lexical.add(texts)
    own = np.arange(len(QUESTIONS))
    scores, rows = candidates(index, lexical, vectors, lexical.rows, 6, 0.5, own)
    present = rows >= 0
    assert not (rows == own[:, None]).any()
    assert all(len(set(r[r >= 0])) == (r >= 0).sum() for r in rows)
    query_of = np.repeat(own, 6).reshape(rows.shape)
    expected = np.einsum("ij,ij->i", vectors[query_of[present]], vectors[rows[present]])
    assert np.allclose(scores[present], expected, atol=1e-5)
    # the first half is the vector index's nearest, then the lexical source's best new ones
    assert (rows[:, :3] == nearest(index, vectors, 3, own)[1]).all()
    lexical_best = lexical.search(lexical.rows, 6, own)[1]
    for row, best in zip(rows, lexical_best, strict=True):
        new = [r for r in best if r >= 0 and r not in row[:3]][:3]
        assert row[3 : 3 + len(new)].tolist() == new
    alone = candidates(index, None, vectors, None, 6, 0.5, own)
    assert (alone[1] == nearest(index, vectors, 6, own)[1]).all()


def test_the_lexical_source_finds_what_a_poor_projection_misses(bundles, tmp_path):
    """Projected to 2 dimensions, TF-IDF rows are all but random; the lexical half still
    brings the question that shares the query's rare words, before and after add, save and
    load."""
    bundle = load_bundle(bundles["logreg"])
    settings = {**INDEX_SETTINGS, "tfidf_dim": 2, "kind": "flat", "candidates": 2}
    words = [w for w in bundle.text_model.vocab if w.isalpha() and len(w) > 3][20:60]
    filler = [f"what is the best {word}" for word in words if word not in ("insomnia", "migraine")]
    index = QuestionIndex.build(filler, None, bundle, {**settings, "lexical_share": 0.5})
    index.add(["what causes insomnia and migraine"], ["target"], bundle)
    query = pd.Series(["how should i treat migraine and insomnia"], dtype="string")
    assert "target" in index.bank["bank_id"].to_numpy()[index.candidates(query, 2)[1][0]]
    index.save(tmp_path / "index")
    loaded = QuestionIndex.load(tmp_path / "index", bundle)
    assert loaded.lexical.rows.shape[0] == len(loaded.bank) == len(filler) + 1
    assert "target" in loaded.bank["bank_id"].to_numpy()[loaded.candidates(query, 2)[1][0]]
    without = QuestionIndex.build(filler, None, bundle, {**settings, "lexical_share": 0.0})
    assert without.lexical is None
