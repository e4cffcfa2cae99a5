from dataclasses import replace

import numpy as np
import pytest
from gensim.models import KeyedVectors
from sklearn.feature_extraction.text import TfidfVectorizer

from pipeline import text_model
from pipeline.text import TextConfig, token_lists
from pipeline.text_model import OOV_ID, PAD_ID, TextModel

TRAIN = [
    "How do I learn Python?",
    "How do I learn Rust?",
    "What is the best way to learn Python?",
    "Is Rust hard?",
    "What is Python?",
]


def word_vectors(words, dim=3, seed=0):
    kv = KeyedVectors(dim)
    kv.add_vectors(
        words, np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32)
    )
    return kv


@pytest.fixture
def model():
    # "rust" has no vector: it is in the vocabulary but not in the weighted mean
    kv = word_vectors(
        ["how", "do", "i", "learn", "python", "?", "what", "is", "the", "best", "way", "to", "hard"]
    )
    return TextModel.fit(TRAIN, TextConfig(), kv, max_len=6)


@pytest.mark.parametrize("sublinear_tf", [False, True])
def test_tfidf_matches_scikit_learn_vectorizer(model, sublinear_tf):
    reference = TfidfVectorizer(
        analyzer=lambda text: token_lists([text])[0], norm=None, sublinear_tf=sublinear_tf
    )
    expected = reference.fit(TRAIN).transform(["How do I learn Python ? python"])
    model = replace(model, sublinear_tf=sublinear_tf)
    got = model.tfidf(model.tokens(["How do I learn Python ? python"]))
    order = [reference.vocabulary_[w] for w in model.vocab]
    assert np.allclose(got.toarray(), expected.toarray()[:, order], atol=1e-6)


@pytest.mark.parametrize("weighting", ["tfidf", "idf", "mean"])
def test_weighted_mean_equals_reference_loop(model, weighting):
    model = replace(model, weighting=weighting)
    questions = ["How do I learn Python? Python!", "Is Rust hard?", "What is the way?"]
    got, empty = model.embed(model.tokens(questions))
    index = {w: i for i, w in enumerate(model.vocab)}
    for row, tokens in enumerate(token_lists(questions)):
        counts = {}
        for token in tokens:
            if token in index and model.known[index[token]]:
                counts[token] = counts.get(token, 0) + 1
        total, weight_sum = np.zeros(model.dim), 0.0
        for token, count in counts.items():
            i = index[token]
            weight = {"tfidf": count * model.idf[i], "idf": model.idf[i], "mean": count}[weighting]
            total += weight * model.vectors[i]
            weight_sum += weight
        assert np.allclose(got[row], total / weight_sum, atol=1e-5)
    assert not empty.any()


@pytest.mark.parametrize(
    "weighting, sublinear_tf", [("tfidf", False), ("tfidf", True), ("idf", False), ("mean", False)]
)
def test_embedding_does_not_depend_on_block_sizes(model, monkeypatch, weighting, sublinear_tf):
    model = replace(model, weighting=weighting, sublinear_tf=sublinear_tf)
    tokens = model.tokens(TRAIN * 7 + ["", "zzz", "python python python rust", "Rust"])
    whole, whole_empty = model.embed(tokens)
    monkeypatch.setattr(text_model, "EMBED_BLOCK_ROWS", 5)
    monkeypatch.setattr(text_model, "PRODUCT_ROWS", 2)
    blocked, blocked_empty = model.embed(tokens)
    assert np.allclose(blocked, whole, atol=1e-6) and (blocked_empty == whole_empty).all()
    assert whole_empty.sum() == 3
    part, part_empty = model.embed(tokens.slice(3, 33))  # a slice: offsets do not start at 0
    assert np.allclose(part, whole[3:36], atol=1e-6) and (part_empty == whole_empty[3:36]).all()


def test_small_and_large_inputs_find_words_alike(model, monkeypatch):
    """A few tokens use a hash table built once, many use Arrow's kernel: same answers."""
    questions = TRAIN * 3 + ["", "zzz", "python python rust ?"]
    tokens = model.tokens(questions)
    small = (model.tfidf(tokens), model.token_ids(tokens), model.embed(tokens)[0])
    monkeypatch.setattr(text_model, "SMALL_LOOKUP", 0)
    large = (model.tfidf(tokens), model.token_ids(tokens), model.embed(tokens)[0])
    assert (small[0] != large[0]).nnz == 0
    assert np.array_equal(small[1], large[1]) and np.array_equal(small[2], large[2])
    flat = tokens.flatten()
    assert model._lookup.positions(flat).tolist() == [
        list(model.vocab).index(word) if word in model.vocab else -1 for word in flat.to_pylist()
    ]


def test_questions_without_known_words_get_zero_vectors(model):
    emb, empty = model.embed(model.tokens(["zzz qqq", "", "Rust", "Python"]))
    assert empty.tolist() == [True, True, True, False]
    assert not emb[:3].any()


def test_token_ids_pad_truncate_and_mark_oov(model):
    ids = model.token_ids(model.tokens(["learn zzz", "", "how do i learn python ? really"]))
    vocab = list(model.vocab)
    assert ids.shape == (3, 6) and ids.dtype == np.int32
    assert ids[0].tolist() == [vocab.index("learn") + 2, OOV_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]
    assert (ids[1] == PAD_ID).all()
    assert ids[2, -1] == vocab.index("?") + 2  # truncated after max_len tokens


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path)
    loaded = TextModel.load(tmp_path)
    questions = model.tokens(["How is Python?", "best way to learn rust"])
    assert np.array_equal(loaded.embed(questions)[0], model.embed(questions)[0])
    assert np.array_equal(loaded.token_ids(questions), model.token_ids(questions))
    assert (loaded.tfidf(questions) != model.tfidf(questions)).nnz == 0
    assert not any(p.suffix == ".pkl" for p in tmp_path.iterdir())


def test_a_loaded_model_tokenizes_with_its_own_text_settings(tmp_path):
    kv = word_vectors(["how", "do", "i", "learn", "python", "?"])
    config = TextConfig(end_marks="drop")
    TextModel.fit(TRAIN, config, kv, max_len=6).save(tmp_path)
    loaded = TextModel.load(tmp_path)
    assert loaded.text == config
    assert loaded.tokens(["How do I learn Python??"]).to_pylist() == [
        ["how", "do", "i", "learn", "python"]
    ]


def test_features_stage_outputs(featurized):
    from pipeline.text_model import load_split, load_tfidf

    directory = featurized["paths"]["features"]
    train = load_split(directory, "train")
    q1, q2 = load_tfidf(f"{directory}/train_tfidf.npz")
    n = len(train["label"])
    assert train["emb_q1"].shape[0] == train["ids_q2"].shape[0] == q1.shape[0] == q2.shape[0] == n
    assert train["ids_q1"].dtype == np.int32 and train["emb_q1"].dtype == np.float32
