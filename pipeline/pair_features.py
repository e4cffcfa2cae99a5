"""Pair features for the gradient-boosted model, computed from each pair's own text only.

Training and scoring both import this module, so the features cannot drift. Work is split as
the scorer splits it: `QuestionTable.build` does everything that sees one question (tokens,
TF-IDF rows, hashed character n-grams, numbers, the weighted embedding), once per distinct
question; `pair_features` compares the rows of a pair's two questions. Every step is a
whole-batch operation (pyarrow, numpy, scipy.sparse, and rapidfuzz's `cpdist`, which compares
pair i of two lists in C++): there is no Python loop over pairs or tokens.

Every feature is symmetric in the two questions (min/max/|difference| rather than first/second),
so a pair scores the same either way round. Nothing here measures how a dataset was sampled:
no question frequencies, no question-graph features, no ids. A deployed scorer sees one pair.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from rapidfuzz import fuzz, process

from pipeline.lexicon import ANTONYMS, JOINING_WORDS, NEGATION, RELATING_WORDS
from pipeline.text_model import FIRST_WORD_ID, TextModel

CHAR_NGRAMS = (2, 3, 4, 5)  # byte n-grams of the lowercased text, spaces at both ends
CHAR_BUCKETS = 1 << 20  # hashed n-gram columns
SIMILARITY_TOKENS = 20  # words per question in the word-to-word cosine matrix
SIMILARITY_BATCH = 1024  # pairs per cosine-matrix product
QUESTION_WORDS = ("what", "how", "why", "which", "who", "whom", "whose", "where", "when")
THREADED_PAIRS = 4096  # from this many pairs on, rapidfuzz compares them on every core
FUZZ_SCORERS = {
    "fuzz_ratio": fuzz.ratio,
    "fuzz_partial_ratio": fuzz.partial_ratio,
    "fuzz_token_sort_ratio": fuzz.token_sort_ratio,
    "fuzz_token_set_ratio": fuzz.token_set_ratio,
}
FEATURE_NAMES = (
    "word_tfidf_cosine",
    "char_tfidf_cosine",
    "shared_word_share",
    "shared_idf_share",
    "shared_bigram_share",
    "unshared_bigrams_joining",
    "unshared_bigrams_relating",
    "negations_abs_diff",
    "antonyms_across",
    *FUZZ_SCORERS,
    "chars_min",
    "chars_max",
    "chars_abs_diff",
    "tokens_min",
    "tokens_max",
    "tokens_abs_diff",
    "same_first_word",
    "both_question_word",
    "same_question_word",
    "numbers_in_one_only",
    "numbers_in_both",
    "embedding_cosine",
    "embedding_euclidean",
    "word_similarity_mean",
    "word_similarity_max",
    "word_alignment_mean",
    "word_alignment_min",
)
_HASH_PRIME = np.uint64(1_099_511_628_211)  # FNV-64 prime: spreads successive bytes
_HASH_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits pick the bucket


@dataclass
class QuestionTable:
    """What the pair features need of each question, one row per question."""

    text: np.ndarray  # lowercased text (object array of str), for the fuzzy ratios
    words: sp.csr_matrix  # word TF-IDF rows, L2-normalized
    presence: sp.csr_matrix  # 1 where a vocabulary word occurs
    bigrams: sp.csr_matrix  # 1 where two tokens follow each other (columns: this table's)
    bigrams_joining: sp.csr_matrix  # the bigrams that hold a JOINING_WORDS word
    bigrams_relating: sp.csr_matrix  # the bigrams that hold a RELATING_WORDS word
    negations: np.ndarray  # how many negations (lexicon.NEGATION) the question holds
    antonym_sides: np.ndarray  # (n, len(ANTONYMS)): 1 first word of the pair, -1 second, 0
    word_idf: sp.csr_matrix  # the word's idf where it occurs
    chars: sp.csr_matrix  # hashed character n-gram TF-IDF rows, L2-normalized
    numbers: sp.csr_matrix  # 1 where a number token occurs (columns: this table's numbers)
    embedding: np.ndarray  # TF-IDF-weighted mean word vector
    similar_ids: np.ndarray  # ids of the first SIMILARITY_TOKENS words with a vector, 0 pads
    n_chars: np.ndarray
    n_tokens: np.ndarray
    first_word: np.ndarray  # code of the first token (this table's codes)
    question_word: np.ndarray  # index into QUESTION_WORDS of the first such word, -1 if none

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, rows) -> QuestionTable:
        return QuestionTable(*(getattr(self, f.name)[rows] for f in fields(self)))

    @classmethod
    def build(cls, questions, text_model: TextModel, char_idf: np.ndarray) -> QuestionTable:
        """Rows for normalized `questions` (pyarrow or pandas strings)."""
        questions = pc.fill_null(_as_arrow(questions), "")
        lower = pc.utf8_lower(questions)
        tokens = text_model.tokens(questions)
        compared = _compared_text(lower, tokens, text_model)
        counts = text_model.counts(tokens)
        presence = counts.copy()
        presence.data[:] = 1.0
        word_idf = presence.copy()
        word_idf.data *= text_model.idf[word_idf.indices]
        flat = tokens.flatten()
        starts = np.asarray(tokens.offsets, dtype=np.int64)
        n_tokens = np.diff(starts)
        starts = starts[:-1] - starts[0]
        encoded = pc.dictionary_encode(flat)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        # word order among words: punctuation (but "&", a joining word) does not count
        is_word = pc.match_substring_regex(flat, r"[\w&]").to_numpy(zero_copy_only=False)
        rows = np.repeat(np.arange(len(n_tokens)), n_tokens)
        words_per_question = np.bincount(rows[is_word], minlength=len(n_tokens))
        bigrams, first, second = _bigram_presence(codes[is_word], words_per_question)
        joining, relating = (
            pc.is_in(encoded.dictionary, value_set=pa.array(words)).to_numpy(zero_copy_only=False)
            for words in (JOINING_WORDS, RELATING_WORDS)
        )
        first_word = np.where(n_tokens > 0, codes[np.minimum(starts, max(len(codes) - 1, 0))], -1)
        return cls(
            text=np.asarray(compared.to_numpy(zero_copy_only=False), dtype=object),
            words=_l2_rows(text_model.tfidf(tokens)),
            presence=presence,
            bigrams=bigrams,
            bigrams_joining=_columns_where(bigrams, joining[first] | joining[second]),
            bigrams_relating=_columns_where(bigrams, relating[first] | relating[second]),
            negations=pc.count_substring_regex(lower, NEGATION)
            .to_numpy(zero_copy_only=False)
            .astype(np.float32),
            antonym_sides=_antonym_sides(flat, n_tokens),
            word_idf=word_idf,
            chars=_l2_rows(char_tfidf(compared, char_idf)),
            numbers=_number_presence(flat, n_tokens),
            embedding=text_model.embed(tokens)[0],
            similar_ids=_words_with_vectors(text_model, text_model.token_ids(tokens)),
            n_chars=pc.utf8_length(questions).to_numpy(zero_copy_only=False).astype(np.float32),
            n_tokens=n_tokens.astype(np.float32),
            first_word=first_word,
            question_word=_first_question_word(flat, n_tokens),
        )


def pair_features(a: QuestionTable, b: QuestionTable, word_vectors: np.ndarray) -> np.ndarray:
    """(pairs, len(FEATURE_NAMES)) float32 features of row i of `a` against row i of `b`.

    `word_vectors` are the text model's vectors by token id, L2-normalized
    (`unit_word_vectors`).
    """
    columns = {}
    columns["word_tfidf_cosine"] = _row_dot(a.words, b.words)
    columns["char_tfidf_cosine"] = _row_dot(a.chars, b.chars)
    both = np.asarray(a.presence.multiply(b.presence).sum(axis=1)).ravel()
    either = np.asarray(a.presence.sum(axis=1)).ravel() + np.asarray(b.presence.sum(axis=1)).ravel()
    columns["shared_word_share"] = _share(both, either - 2 * both)
    shared_idf = np.asarray(a.word_idf.multiply(b.presence).sum(axis=1)).ravel()
    idf_a = np.asarray(a.word_idf.sum(axis=1)).ravel()
    idf_b = np.asarray(b.word_idf.sum(axis=1)).ravel()
    columns["shared_idf_share"] = _share(shared_idf, idf_a + idf_b - 2 * shared_idf)
    # the same words in another order share fewer bigrams: "from india to canada" and "from
    # canada to india" share every word but one bigram of three
    unshared = _in_one_only(a.bigrams, b.bigrams)
    shared_bigrams = (_row_sums(a.bigrams) + _row_sums(b.bigrams) - unshared) / 2
    columns["shared_bigram_share"] = _share(shared_bigrams, unshared)
    # where the order changed: around "and" it rarely matters, around "from ... to" it does
    for name, field in (("joining", "bigrams_joining"), ("relating", "bigrams_relating")):
        changed = _in_one_only(getattr(a, field), getattr(b, field))
        columns[f"unshared_bigrams_{name}"] = _share(changed, unshared - changed)
    columns["negations_abs_diff"] = np.abs(a.negations - b.negations)
    # an opposite word in each: "better" in one, "worse" in the other
    columns["antonyms_across"] = (a.antonym_sides * b.antonym_sides == -1).sum(axis=1)
    # starting threads costs more than comparing a few pairs (0.4 ms against 0.01 for 50)
    workers = -1 if len(a.text) >= THREADED_PAIRS else 1
    for name, scorer in FUZZ_SCORERS.items():
        columns[name] = process.cpdist(a.text, b.text, scorer=scorer, workers=workers) / 100.0
    columns["chars_min"] = np.minimum(a.n_chars, b.n_chars)
    columns["chars_max"] = np.maximum(a.n_chars, b.n_chars)
    columns["chars_abs_diff"] = np.abs(a.n_chars - b.n_chars)
    columns["tokens_min"] = np.minimum(a.n_tokens, b.n_tokens)
    columns["tokens_max"] = np.maximum(a.n_tokens, b.n_tokens)
    columns["tokens_abs_diff"] = np.abs(a.n_tokens - b.n_tokens)
    columns["same_first_word"] = (a.first_word == b.first_word) & (a.first_word >= 0)
    columns["both_question_word"] = (a.question_word >= 0) & (b.question_word >= 0)
    columns["same_question_word"] = (a.question_word == b.question_word) & (a.question_word >= 0)
    shared_numbers = np.asarray(a.numbers.multiply(b.numbers).sum(axis=1)).ravel()
    numbers_a = np.asarray(a.numbers.sum(axis=1)).ravel()
    numbers_b = np.asarray(b.numbers.sum(axis=1)).ravel()
    columns["numbers_in_one_only"] = numbers_a + numbers_b - 2 * shared_numbers
    columns["numbers_in_both"] = shared_numbers
    norm_a = np.linalg.norm(a.embedding, axis=1)
    norm_b = np.linalg.norm(b.embedding, axis=1)
    dot = np.einsum("ij,ij->i", a.embedding, b.embedding)
    columns["embedding_cosine"] = _share(dot, norm_a * norm_b - dot)
    columns["embedding_euclidean"] = np.linalg.norm(a.embedding - b.embedding, axis=1)
    columns.update(_word_similarities(a.similar_ids, b.similar_ids, word_vectors))
    return np.column_stack([np.asarray(columns[name], dtype=np.float32) for name in FEATURE_NAMES])


def unit_word_vectors(text_model: TextModel) -> np.ndarray:
    """Word vectors by token id, L2-normalized; padding, unknown words and words without a
    vector are zero rows (they never count as similar)."""
    matrix = text_model.embedding_matrix()
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def fit_char_idf(questions, text_model: TextModel) -> np.ndarray:
    """Smooth idf (scikit-learn's formula) of each n-gram bucket over `questions`."""
    questions = pc.fill_null(_as_arrow(questions), "")
    lower = pc.utf8_lower(questions)
    tokens = text_model.tokens(questions) if text_model.spelling else None
    counts = char_counts(_compared_text(lower, tokens, text_model))
    doc_freq = np.bincount(counts.indices, minlength=CHAR_BUCKETS)
    n = counts.shape[0]
    return (np.log((1 + n) / (1 + doc_freq)) + 1).astype(np.float32)


def _compared_text(lower: pa.Array, tokens: pa.ListArray | None, text_model: TextModel):
    """What the character n-grams and fuzzy ratios compare: the lowercased text or, when the
    text model corrects spelling, its corrected tokens joined by spaces (a typo that the model
    reads as the word then changes neither)."""
    if not text_model.spelling:
        return lower
    return pc.utf8_lower(pc.binary_join(tokens, " "))


def char_tfidf(lower: pa.Array, char_idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear tf (1 + log count) times idf of the hashed n-grams of lowercased texts."""
    weights = char_counts(lower)
    np.log(weights.data, out=weights.data)
    weights.data += 1
    weights.data *= char_idf[weights.indices]
    return weights


def char_counts(lower: pa.Array) -> sp.csr_matrix:
    """(n, CHAR_BUCKETS) counts of the byte n-grams (CHAR_NGRAMS) of " text ".

    The n-grams of all texts are hashed at once from Arrow's byte buffer: a rolling hash over
    the whole buffer, keeping the windows that lie inside one text.
    """
    padded = pc.binary_join_element_wise(" ", lower, " ", "")
    padded = pa.concat_arrays([padded]) if padded.offset else padded  # offsets from 0
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[: len(padded) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    offsets -= offsets[0]
    lengths = np.diff(offsets)
    row_of_byte = np.repeat(np.arange(len(padded)), lengths)
    end_of_row = np.repeat(offsets[1:], lengths)
    rows, columns = [], []
    rolling = data.astype(np.uint64)
    for n in range(1, max(CHAR_NGRAMS) + 1):
        if n > 1:  # rolling[i] now hashes bytes i .. i + n - 1
            rolling = rolling[:-1] * _HASH_PRIME + data[n - 1 :].astype(np.uint64)
        if n not in CHAR_NGRAMS:
            continue
        starts = np.flatnonzero(np.arange(len(rolling)) + n <= end_of_row[: len(rolling)])
        mixed = (rolling[starts] + np.uint64(n)) * _HASH_MIX
        rows.append(row_of_byte[starts])
        columns.append((mixed >> np.uint64(64 - CHAR_BUCKETS.bit_length() + 1)).astype(np.int64))
    rows, columns = np.concatenate(rows), np.concatenate(columns)
    counts = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, columns)), shape=(len(padded), CHAR_BUCKETS)
    )
    counts.sum_duplicates()
    return counts


def _word_similarities(ids_a: np.ndarray, ids_b: np.ndarray, unit: np.ndarray) -> dict:
    """From the cosine matrix of a's words against b's (words with a vector only): its mean
    and max, and how well each question's words are matched by the other's (mean over a's
    words of their best cosine in b, the same from b, then their mean and their minimum)."""
    names = ("word_similarity_mean", "word_similarity_max", "word_alignment_mean")
    out = {name: np.zeros(len(ids_a)) for name in (*names, "word_alignment_min")}
    for start in range(0, len(ids_a), SIMILARITY_BATCH):
        part = slice(start, start + SIMILARITY_BATCH)
        a_ids, b_ids = ids_a[part], ids_b[part]
        known_a, known_b = a_ids > 0, b_ids > 0  # words come first, padding after
        width_a = max(int(known_a.sum(axis=1).max(initial=0)), 1)
        width_b = max(int(known_b.sum(axis=1).max(initial=0)), 1)
        known_a, known_b = known_a[:, :width_a], known_b[:, :width_b]
        # in float64: float32 products summed in an order that depends on the batch's shape
        # differ in the last bits, and trees split there; float64's noise is gone in the
        # float32 features, so a pair's features do not depend on the pairs beside it
        a = unit[a_ids[:, :width_a]].astype(np.float64)
        b = unit[b_ids[:, :width_b]].astype(np.float64)
        sims = np.matmul(a, b.transpose(0, 2, 1))  # (pairs, words of a, words of b)
        valid = known_a[:, :, None] & known_b[:, None, :]
        cells = valid.sum(axis=(1, 2))
        total = np.where(valid, sims, 0).sum(axis=(1, 2))
        out["word_similarity_mean"][part] = np.where(cells > 0, total / np.maximum(cells, 1), 0)
        masked = np.where(valid, sims, -2.0)
        out["word_similarity_max"][part] = np.where(cells > 0, masked.max(axis=(1, 2)), 0)
        align_ab = _masked_mean(masked.max(axis=2), known_a & known_b.any(axis=1)[:, None])
        align_ba = _masked_mean(masked.max(axis=1), known_b & known_a.any(axis=1)[:, None])
        out["word_alignment_mean"][part] = (align_ab + align_ba) / 2
        out["word_alignment_min"][part] = np.minimum(align_ab, align_ba)
    return out


def _words_with_vectors(text_model: TextModel, ids: np.ndarray) -> np.ndarray:
    """Per question, the ids of its first SIMILARITY_TOKENS words that have a vector, moved
    to the front (0 after them)."""
    has_vector = np.concatenate([np.zeros(FIRST_WORD_ID, bool), text_model.known > 0])
    keep = has_vector[ids] & (ids >= FIRST_WORD_ID)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept words first, in their order
    compact = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(ids, order, 1), 0)
    return compact[:, :SIMILARITY_TOKENS].astype(np.int32)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    return np.where(count > 0, np.where(mask, values, 0).sum(axis=1) / np.maximum(count, 1), 0)


def _number_presence(flat: pa.Array, n_tokens: np.ndarray) -> sp.csr_matrix:
    """(n, distinct numbers of this table) presence of the tokens made of digits."""
    rows = np.repeat(np.arange(len(n_tokens)), n_tokens)
    is_number = pc.fill_null(pc.utf8_is_digit(flat), False).to_numpy(zero_copy_only=False)
    numbers = pc.dictionary_encode(flat.filter(pa.array(is_number)))
    columns = numbers.indices.to_numpy(zero_copy_only=False)
    return _presence(rows[is_number], columns, len(n_tokens), len(numbers.dictionary))


def _bigram_presence(
    codes: np.ndarray, n_tokens: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(n, distinct bigrams of this table) presence of each question's ordered token pairs,
    and each column's first and second token code; `codes` are the flat tokens' codes,
    `n_tokens` each question's count of them."""
    rows = np.repeat(np.arange(len(n_tokens)), n_tokens)
    follows = rows[:-1] == rows[1:]  # token i + 1 is in token i's question
    base = int(codes.max(initial=0)) + 1
    keys = codes[:-1][follows].astype(np.int64) * base + codes[1:][follows]
    bigrams, columns = np.unique(keys, return_inverse=True)
    matrix = _presence(rows[:-1][follows], columns, len(n_tokens), len(bigrams))
    if not len(bigrams):
        bigrams = np.zeros(1, np.int64)  # the one empty column
    return matrix, bigrams // base, bigrams % base


def _presence(rows: np.ndarray, columns: np.ndarray, n_rows: int, n_columns: int):
    """(n_rows, n_columns, at least 1) CSR with 1 at each (row, column), repeats counted once."""
    matrix = sp.csr_matrix(
        (np.ones(len(columns), np.float32), (rows, columns)), shape=(n_rows, max(n_columns, 1))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _antonym_sides(flat: pa.Array, n_tokens: np.ndarray) -> np.ndarray:
    """(n, len(ANTONYMS)) int8: per antonym pair, 1 where a question holds only its first
    word, -1 only its second, 0 neither or both."""
    rows = np.repeat(np.arange(len(n_tokens)), n_tokens)
    sides = np.zeros((len(n_tokens), 2 * len(ANTONYMS)), np.int8)
    words = pa.array([word for pair in ANTONYMS for word in pair])
    which = pc.fill_null(pc.index_in(flat, value_set=words), -1).to_numpy(zero_copy_only=False)
    hits = which >= 0
    sides[rows[hits], which[hits]] = 1
    return sides[:, 0::2] - sides[:, 1::2]


def _columns_where(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """`matrix` with only the columns where `keep` is true (the others emptied)."""
    kept = matrix.multiply(keep[np.newaxis, :].astype(np.float32)).tocsr()
    kept.eliminate_zeros()
    return kept


def _in_one_only(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """Per row, how many columns of two presence matrices are set in exactly one."""
    return _row_sums(a) + _row_sums(b) - 2 * _row_dot(a, b)


def _row_sums(matrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1)).ravel()


def _first_question_word(flat: pa.Array, n_tokens: np.ndarray) -> np.ndarray:
    rows = np.repeat(np.arange(len(n_tokens)), n_tokens)
    which = pc.index_in(flat, value_set=pa.array(QUESTION_WORDS))
    which = pc.fill_null(which, -1).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(which >= 0)
    first = np.full(len(n_tokens), -1, dtype=np.int64)
    hit_rows, first_hit = np.unique(rows[hits], return_index=True)
    first[hit_rows] = which[hits[first_hit]]
    return first


def _l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    matrix.data *= np.repeat(scale, np.diff(matrix.indptr)).astype(np.float32)
    return matrix


def _row_dot(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    return np.asarray(a.multiply(b).sum(axis=1)).ravel()


def _share(part: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """part / (part + rest), 0 where both are 0."""
    total = part + rest
    return np.divide(part, total, out=np.zeros(len(part), np.float64), where=total > 0)


def _as_arrow(questions) -> pa.Array:
    from pipeline.text import to_arrow

    return to_arrow(questions)
