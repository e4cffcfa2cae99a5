"""Question featurization shared by the features stage, training, evaluation and scoring.

A `TextModel` holds what turns raw questions into model inputs: text-core settings, the
train-split vocabulary with its idf, and the word vectors aligned to that vocabulary. Every
step is a whole-batch operation: token counts come from pyarrow kernels straight into a
scipy CSR matrix, TF-IDF is scikit-learn's formula (smooth idf from the train split, no
normalization), and a question embedding is one sparse product divided by the row weight sums.
Scoring imports this module, so scikit-learn is imported only where a model is fitted.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from pipeline.io import atomic_path, load_npz, read_json, save_npz, write_json
from pipeline.params import Bool, Choice, Int, Optional, Section
from pipeline.spelling import SpellingCorrector
from pipeline.text import TextConfig, tokenize

FEATURES = Section(
    "features",
    {
        "weighting": Choice("tfidf", "idf", "mean"),
        "sublinear_tf": Bool(),
        "min_df": Int(),
        "max_features": Optional(Int()),
        "max_len": Int(),
        "spelling": Bool(),
    },
)

PAD_ID, OOV_ID = 0, 1  # token ids: 0 pads, 1 is any word outside the vocabulary
FIRST_WORD_ID = 2  # vocabulary word k has token id k + FIRST_WORD_ID
GENERATED_FILE = "train_generated.parquet"  # the features stage's generated train pairs
READS = ("embeddings", "token_ids", "tfidf", "text")  # what a model kind can read per question
WEIGHTINGS = ("tfidf", "idf", "mean")
EMBED_BLOCK_ROWS = 32_768  # questions per thread task: amortizes the vocabulary lookup's set-up
PRODUCT_ROWS = 8192  # (8192, 300) float32 = 10 MB: a product stays in cache on its way out
SMALL_LOOKUP = 16_384  # tokens: below this, a hash table built once beats Arrow's built per call
# (measured over an 84k-word vocabulary: 1.3 against 2.6 ms at 10k tokens, even at ~20k)


class VocabLookup:
    """Tokens -> their position in a vocabulary, -1 outside it.

    Arrow's `index_in` builds a hash table of the whole vocabulary on every call: nothing for
    a batch, but most of the time of a few questions (one dupq-find query, one request of the
    service). Small inputs therefore use a pandas Index, whose hash table is built once, on
    first use, and kept.
    """

    def __init__(self, words):
        self.array = pa.array(list(words), pa.string())
        self._index: pd.Index | None = None
        self._building = threading.Lock()

    def __len__(self) -> int:
        return len(self.array)

    def positions(self, flat: pa.Array) -> np.ndarray:
        if len(flat) > SMALL_LOOKUP:
            found = pc.fill_null(pc.index_in(flat, value_set=self.array), -1)
            return found.to_numpy(zero_copy_only=False).astype(np.int64)
        if self._index is None:
            with self._building:  # the service's find loops may ask at once
                if self._index is None:
                    index = pd.Index(self.array.to_pylist(), dtype=object)
                    # pandas fills an index's hash table on first use, not safely across
                    # threads (pandas #21150): fill it before any other thread sees it
                    index.get_indexer(index[:1])
                    self._index = index
        return self._index.get_indexer(flat.to_pylist()).astype(np.int64)


@dataclass
class TextModel:
    text: TextConfig
    vocab: np.ndarray  # (V,) str, train-split words
    idf: np.ndarray  # (V,) float32, scikit-learn smooth idf
    vectors: np.ndarray  # (V, dim) float32, zero rows for words without a vector
    weighting: str = "tfidf"
    sublinear_tf: bool = False
    max_len: int = field(kw_only=True)  # token ids per question: features.max_len
    spelling: bool = field(default=False, kw_only=True)  # read misspelt words as known ones
    _lookup: VocabLookup = field(init=False, repr=False)

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"features.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}"
            )
        self._lookup = VocabLookup(self.vocab.tolist())
        self.known = (np.abs(self.vectors).sum(axis=1) > 0).astype(np.float32)
        self._speller: SpellingCorrector | None = None
        self._building_speller = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    # -- building ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        train_questions,
        text: TextConfig,
        word_vectors,
        min_df: int = 1,
        max_features: int | None = None,
        **settings,
    ) -> TextModel:
        """Vocabulary and idf from the train questions; vectors looked up in `word_vectors`."""
        tokens = tokenize(train_questions, text)
        flat = tokens.flatten()
        rows = _row_ids(tokens)
        distinct = pa.table({"row": rows, "word": flat}).group_by(["row", "word"]).aggregate([])
        doc_freq = pc.value_counts(distinct["word"]).flatten() if len(distinct) else None
        if doc_freq is None:
            raise ValueError("the train split has no tokens to build a vocabulary from")
        words = doc_freq[0].to_numpy(zero_copy_only=False)
        freqs = doc_freq[1].to_numpy()
        order = np.lexsort((words, -freqs))  # most frequent first, ties alphabetical
        words, freqs = words[order], freqs[order]
        keep = freqs >= min_df
        words = words[keep][:max_features] if max_features else words[keep]
        from sklearn.feature_extraction.text import TfidfTransformer

        counts = _count_matrix(tokens, VocabLookup(words.tolist()))
        idf = TfidfTransformer().fit(counts).idf_.astype(np.float32)
        index = pd.Index(word_vectors.index_to_key).get_indexer(words)
        vectors = np.zeros((len(words), word_vectors.vector_size), dtype=np.float32)
        vectors[index >= 0] = word_vectors.vectors[index[index >= 0]]
        return cls(text, words.astype(str), idf, vectors, **settings)

    # -- featurizing -----------------------------------------------------------------------
    def tokens(self, questions) -> pa.ListArray:
        """The text core's tokens; with `spelling`, a word without a vector one edit from a
        word with one is replaced by it (`pipeline.spelling`)."""
        tokens = tokenize(questions, self.text)
        return self._corrected(tokens) if self.spelling else tokens

    def _corrected(self, tokens: pa.ListArray) -> pa.ListArray:
        flat = tokens.flatten()
        positions = self._lookup.positions(flat)
        unknown = (positions < 0) | (self.known[np.maximum(positions, 0)] == 0)
        if not unknown.any():
            return tokens
        distinct = pc.unique(flat.filter(pa.array(unknown)))
        places = self._lookup.positions(distinct)
        # a word outside the vocabulary is in no train question: exact with min_df 1, where
        # the rarest word is in one (and fewer corrections with a higher min_df)
        unseen = float(self.idf.max()) + np.log(2) if len(self.idf) else 0.0
        idf = np.where(places >= 0, self.idf[np.maximum(places, 0)], unseen)
        fixes = self._corrector().correct(distinct, idf)
        if (fixes < 0).all():
            return tokens
        fixed = pa.array(np.where(fixes >= 0, self.vocab[np.maximum(fixes, 0)], None), pa.string())
        replacement = fixed.take(pc.index_in(flat, value_set=distinct))
        flat = pc.coalesce(replacement, flat)
        offsets = pc.subtract(tokens.offsets, tokens.offsets[0])
        return pa.ListArray.from_arrays(offsets, flat)

    def _corrector(self) -> SpellingCorrector:
        if self._speller is None:
            with self._building_speller:  # the service's find loops may ask at once
                if self._speller is None:
                    self._speller = SpellingCorrector(self.vocab, self.known > 0, self.idf)
        return self._speller

    def counts(self, tokens: pa.ListArray) -> sp.csr_matrix:
        return _count_matrix(tokens, self._lookup)

    def tfidf(self, tokens: pa.ListArray) -> sp.csr_matrix:
        return self._tf_idf(self.counts(tokens))

    def _tf_idf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """tf * idf, tf being the count or 1 + log(count) with sublinear_tf: scikit-learn's
        TfidfTransformer(norm=None) (a test holds them equal) without importing it."""
        weights = counts.astype(np.float32)  # a copy: counts stay counts
        if self.sublinear_tf:
            np.log(weights.data, out=weights.data)
            weights.data += 1
        weights.data *= self.idf[weights.indices]
        return weights

    def weights(self, tokens: pa.ListArray) -> sp.csr_matrix:
        """Per-question word weights for the weighted mean, by `weighting`."""
        counts = self.counts(tokens)
        if self.weighting == "tfidf":
            return self._tf_idf(counts)
        if self.weighting == "idf":
            presence = counts.copy()
            presence.data[:] = 1.0
            return (presence @ sp.diags(self.idf)).tocsr()
        return counts

    def embed(self, tokens: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of word vectors per question; mask of questions with no known word.

        Row blocks run on all cores (pyarrow, numpy and scipy release the GIL); within a
        block, products are taken a slice at a time so each stays in cache on its way out.
        """
        out = np.empty((len(tokens), self.dim), dtype=np.float32)
        empty = np.empty(len(tokens), dtype=bool)

        def embed_block(start: int) -> None:
            stop = min(start + EMBED_BLOCK_ROWS, len(tokens))
            weights, empty[start:stop] = self._mean_weights(tokens.slice(start, stop - start))
            for first in range(0, stop - start, PRODUCT_ROWS):
                last = min(first + PRODUCT_ROWS, stop - start)
                out[start + first : start + last] = weights[first:last] @ self.vectors

        starts = range(0, len(tokens), EMBED_BLOCK_ROWS)
        if len(starts) <= 1:  # a pool's threads cost more than a few questions take
            list(map(embed_block, starts))
        else:
            with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
                list(pool.map(embed_block, starts))
        return out, empty

    def _mean_weights(self, tokens: pa.ListArray) -> tuple[sp.csr_matrix, np.ndarray]:
        """Word weights scaled so each question's sum to 1 over words with a vector."""
        if self.weighting == "idf" or self.sublinear_tf:  # weights depend on per-word counts
            weights = (self.weights(tokens) @ sp.diags(self.known)).tocsr()
        else:  # linear in the counts: one entry per token, repeats need no summing first
            per_word = self.known * (self.idf if self.weighting == "tfidf" else np.float32(1))
            weights = _token_matrix(tokens, self._lookup, per_word)
        total = np.asarray(weights.sum(axis=1), dtype=np.float32).ravel()
        empty = total <= 0
        scale = np.divide(1.0, total, out=np.zeros_like(total), where=~empty)
        weights.data *= np.repeat(scale, np.diff(weights.indptr))
        return weights, empty

    def question_inputs(self, questions, reads: str):
        """What a model kind reads per normalized question (`ModelKind.reads`): TF-IDF rows,
        token ids, TF-IDF-weighted embeddings, or the text itself."""
        if reads == "text":
            return questions
        tokens = self.tokens(questions)
        if reads == "tfidf":
            return self.tfidf(tokens)
        if reads == "token_ids":
            return self.token_ids(tokens)
        if reads == "embeddings":
            return self.embed(tokens)[0]
        raise ValueError(f"unknown model input {reads!r} (one of {', '.join(READS)})")

    def embedding_matrix(self) -> np.ndarray:
        """Word vectors indexed by token id: rows PAD_ID and OOV_ID are zero."""
        return np.vstack([np.zeros((FIRST_WORD_ID, self.dim), np.float32), self.vectors])

    def idf_by_id(self) -> np.ndarray:
        """idf indexed by token id: 0 for padding, the highest idf for unknown words."""
        top = float(self.idf.max()) if len(self.idf) else 1.0
        return np.concatenate([[0.0, top], self.idf]).astype(np.float32)

    def token_ids(self, tokens: pa.ListArray) -> np.ndarray:
        """(n, max_len) int32 ids, post-padded with PAD_ID and truncated at max_len."""
        positions = self._lookup.positions(tokens.flatten())
        ids = np.where(positions >= 0, positions + FIRST_WORD_ID, OOV_ID)
        lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        position = np.arange(len(ids)) - np.repeat(starts, lengths)
        keep = position < self.max_len
        out = np.full((len(lengths), self.max_len), PAD_ID, dtype=np.int32)
        out[rows[keep], position[keep]] = ids[keep]
        return out

    # -- persistence (JSON + NPZ, no pickle) ------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_npz(
            directory / "text_model.npz",
            vocab=self.vocab.astype(str),
            idf=self.idf,
            vectors=self.vectors,
        )
        write_json(
            directory / "text_model.json",
            {
                "text": self.text.to_dict(),
                "weighting": self.weighting,
                "sublinear_tf": self.sublinear_tf,
                "max_len": self.max_len,
                "spelling": self.spelling,
                "vocab_size": len(self.vocab),
                "dim": self.dim,
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> TextModel:
        directory = Path(directory)
        meta = read_json(directory / "text_model.json")
        arrays = load_npz(directory / "text_model.npz")
        return cls(
            TextConfig.from_dict(meta["text"]),
            arrays["vocab"],
            arrays["idf"],
            arrays["vectors"],
            weighting=meta["weighting"],
            sublinear_tf=meta["sublinear_tf"],
            max_len=meta["max_len"],
            spelling=meta.get("spelling", False),  # bundles made before the setting had none
        )


# -- the features stage's outputs, read by training ------------------------------------------
def save_tfidf(path: Path, q1: sp.csr_matrix, q2: sp.csr_matrix) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            sp.save_npz(f, sp.vstack([q1, q2]).tocsr())


def load_tfidf(path: str | Path) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    stacked = sp.load_npz(path).tocsr()
    half = stacked.shape[0] // 2
    return stacked[:half], stacked[half:]


def load_split(features_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    return load_npz(Path(features_dir) / f"{split}.npz")


def load_pairs(features_dir: str | Path, processed_dir: str | Path, split: str, reads: str) -> dict:
    """One split as a model kind reads it: {"q1", "q2", "label", "same_text"}; train's
    generated pairs (the features stage's) follow its real ones."""
    arrays = load_split(features_dir, split)
    if reads == "text":
        frame = pd.read_parquet(Path(processed_dir) / f"{split}.parquet")
        if split == "train":
            generated = pd.read_parquet(Path(features_dir) / GENERATED_FILE)
            frame = pd.concat([frame, generated], ignore_index=True)
        q1, q2 = frame["question1"], frame["question2"]
    elif reads == "tfidf":
        q1, q2 = load_tfidf(Path(features_dir) / f"{split}_tfidf.npz")
    else:
        prefix = {"embeddings": "emb", "token_ids": "ids"}[reads]
        q1, q2 = arrays[f"{prefix}_q1"], arrays[f"{prefix}_q2"]
    return {"q1": q1, "q2": q2, "label": arrays["label"], "same_text": arrays["same_text"]}


def _row_ids(tokens: pa.ListArray) -> np.ndarray:
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def _count_matrix(tokens: pa.ListArray, vocab: VocabLookup) -> sp.csr_matrix:
    """(n_questions, V) token counts; words outside `vocab` are left out."""
    matrix = _token_matrix(tokens, vocab, np.ones(len(vocab), dtype=np.float32))
    matrix.sum_duplicates()
    return matrix


def _token_matrix(tokens: pa.ListArray, vocab: VocabLookup, value: np.ndarray) -> sp.csr_matrix:
    """(n_questions, V) CSR with one entry per token: `value[word]`, in token order.

    Repeated words stay separate entries (a product sums them anyway); tokens outside `vocab`
    and words whose value is 0 are left out. Built straight from the list offsets: no COO step.
    """
    columns = vocab.positions(tokens.flatten())
    data = np.append(value, np.float32(0))[columns]  # column -1 (unknown word) reads the 0
    keep = data != 0
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[offsets - offsets[0]]
    return sp.csr_matrix(
        (data[keep], columns[keep], indptr), shape=(len(tokens), len(vocab)), copy=False
    )
