import numpy as np
import pyarrow as pa
import pytest
from rapidfuzz.distance import OSA

from pipeline.spelling import MAX_LENGTH, MIN_LENGTH, MIN_RATIO, SpellingCorrector
from pipeline.text import TextConfig
from pipeline.text_model import TextModel
from tests.test_features import word_vectors

# most frequent first, as TextModel.fit orders its vocabulary; "itailan" has no vector
VOCAB = np.array(
    ["learn", "italian", "lean", "swift", "online", "there", "cats", "itailan", "2016", "mistry"]
)
DOC_FREQ = np.array([900, 800, 700, 600, 500, 400, 300, 2, 100, 1])
KNOWN = DOC_FREQ >= 100


def idf(doc_freq, documents=1000):
    return np.log((1 + documents) / (1 + np.asarray(doc_freq, float))) + 1


def corrections(corrector, words, doc_freq=0):
    found = corrector.correct(pa.array(words, pa.string()), idf(np.full(len(words), doc_freq)))
    return [VOCAB[i] if i >= 0 else None for i in found]


def test_one_edit_of_any_kind_finds_the_most_frequent_known_word():
    corrector = SpellingCorrector(VOCAB, KNOWN, idf(DOC_FREQ))
    # swapped neighbours, a dropped, an added and a changed letter; "leran" is one edit from
    # both "lean" and "learn": the more frequent one wins
    words = ["itailan", "swfit", "onlne", "onlinee", "swaft", "leran", "theere", "catts"]
    assert corrections(corrector, words) == [
        "italian", "swift", "online", "online", "swift", "learn", "there", "cats",
    ]  # fmt: skip


def test_far_short_and_non_letter_words_stay_unknown():
    corrector = SpellingCorrector(VOCAB, KNOWN, idf(DOC_FREQ))
    # two edits away; too short to correct; digits; symbols; nothing
    words = ["sfwti", "cat", "2061", "itailan!", "", "bearn"]  # "bearn": another first letter
    assert corrections(corrector, words) == [None] * len(words)
    assert corrections(corrector, ["itailen"]) == [None]  # a word without a vector is no target
    # a word nearly as frequent as the word one edit away is a word of its own ("Cyrus
    # Mistry", not "misery")
    assert corrections(corrector, ["onlnie"], doc_freq=500 // MIN_RATIO) == [None]
    assert corrections(corrector, ["onlnie"], doc_freq=500 // MIN_RATIO - 1) == ["online"]


def test_a_run_of_characters_is_no_typo_and_costs_nothing():
    # its deletes would be length squared characters: 10 GB for a 100,000-letter "word"
    corrector = SpellingCorrector(
        np.append(VOCAB, "x" * 40), np.append(KNOWN, True), idf(DOC_FREQ.tolist() + [900])
    )
    words = ["x" * 100_000, "x" * (MAX_LENGTH + 1), "x" * 39]
    assert corrections(corrector, words) == [None] * len(words)


def test_the_delete_index_finds_what_a_brute_force_search_finds():
    rng = np.random.default_rng(0)
    letters = np.array(list("abcde"))
    vocab = np.unique(["".join(rng.choice(letters, rng.integers(3, 7))) for _ in range(400)])
    vocab = vocab[rng.permutation(len(vocab))]  # "frequency" order: a random one
    known = rng.random(len(vocab)) < 0.7
    vocab_idf = np.sort(rng.uniform(1, 9, len(vocab)))  # most frequent first
    queries = ["".join(rng.choice(letters, rng.integers(3, 8))) for _ in range(1000)]
    query_idf = rng.uniform(1, 9, len(queries))
    corrector = SpellingCorrector(vocab, known, vocab_idf)
    found = corrector.correct(pa.array(queries, pa.string()), query_idf)
    assert (found >= 0).sum() > 10
    for query, own_idf, position in zip(queries, query_idf, found, strict=True):
        close = [
            k for k, word in enumerate(vocab)
            if known[k] and len(word) >= MIN_LENGTH - 1 and OSA.distance(query, word) <= 1
            and query[0] == word[0]
            and own_idf - vocab_idf[k] >= np.log(MIN_RATIO)
        ]  # fmt: skip
        expected = min(close) if close and len(query) >= MIN_LENGTH else -1
        assert position == expected, query


@pytest.fixture
def spelling_model():
    kv = word_vectors(["how", "can", "i", "improve", "my", "italian", "learn", "?", "swift"])
    # far more frequent than a typo seen once
    train = ["How can I improve my Italian?", "How can I learn Swift?"] * (2 * MIN_RATIO)
    train.append("Improve my Itailan")
    return TextModel.fit(train, TextConfig(), kv, max_len=8, spelling=True)


def test_a_model_with_spelling_reads_a_typo_as_the_word(spelling_model, tmp_path):
    questions = ["How can I improve my Itailan?", "How can I improve my Italian?", "laern Swfit"]
    tokens = spelling_model.tokens(questions).to_pylist()
    assert tokens[0] == tokens[1]  # "itailan" is in the vocabulary, but has no vector
    assert tokens[2] == ["learn", "swift"]  # out of the vocabulary altogether
    ids = spelling_model.token_ids(spelling_model.tokens(questions))
    assert np.array_equal(ids[0], ids[1])
    spelling_model.save(tmp_path)
    loaded = TextModel.load(tmp_path)
    assert loaded.spelling and loaded.tokens(questions).to_pylist() == tokens
    # a slice of a batch is corrected like the batch
    assert spelling_model.tokens(pa.array(questions).slice(1)).to_pylist() == tokens[1:]


def test_without_spelling_tokens_are_the_text_cores(spelling_model):
    model = TextModel(
        spelling_model.text,
        spelling_model.vocab,
        spelling_model.idf,
        spelling_model.vectors,
        max_len=8,
    )
    assert model.tokens(["Improve my Itailan"]).to_pylist() == [["improve", "my", "itailan"]]
