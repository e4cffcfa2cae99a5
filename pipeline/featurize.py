"""Question featurization shared by the features stage, training, evaluation and scoring.

A `TextModel` holds what turns raw questions into model inputs: text-core settings, the
train-split vocabulary with its idf, and the word vectors aligned to that vocabulary. Every
step is a whole-batch operation: token counts come from pyarrow kernels straight into a
scipy CSR matrix, TF-IDF is scikit-learn's TfidfTransformer, and a question embedding is one
sparse product divided by the row weight sums.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from pipeline.io import load_npz, read_json, save_npz, write_json
from pipeline.text import TextConfig, tokenize

PAD_ID, OOV_ID = 0, 1  # token ids: 0 pads, 1 is any word outside the vocabulary, words start at 2
WEIGHTINGS = ("tfidf", "idf", "mean")


@dataclass
class TextModel:
    text: TextConfig
    vocab: np.ndarray  # (V,) str, train-split words
    idf: np.ndarray  # (V,) float32, scikit-learn smooth idf
    vectors: np.ndarray  # (V, dim) float32, zero rows for words without a vector
    weighting: str = "tfidf"
    sublinear_tf: bool = False
    max_len: int = 40
    _vocab_array: pa.Array = field(init=False, repr=False)
    _tfidf: TfidfTransformer = field(init=False, repr=False)

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"features.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}"
            )
        self._vocab_array = pa.array(self.vocab.tolist(), pa.string())
        self._tfidf = TfidfTransformer(norm=None, sublinear_tf=self.sublinear_tf)
        self._tfidf.idf_ = self.idf.astype(np.float64)
        self.known = (np.abs(self.vectors).sum(axis=1) > 0).astype(np.float32)

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
        counts = _count_matrix(tokens, pa.array(words.tolist(), pa.string()))
        idf = TfidfTransformer().fit(counts).idf_.astype(np.float32)
        index = pd.Index(word_vectors.index_to_key).get_indexer(words)
        vectors = np.zeros((len(words), word_vectors.vector_size), dtype=np.float32)
        vectors[index >= 0] = word_vectors.vectors[index[index >= 0]]
        return cls(text, words.astype(str), idf, vectors, **settings)

    # -- featurizing -----------------------------------------------------------------------
    def tokens(self, questions) -> pa.ListArray:
        return tokenize(questions, self.text)

    def counts(self, tokens: pa.ListArray) -> sp.csr_matrix:
        return _count_matrix(tokens, self._vocab_array)

    def tfidf(self, tokens: pa.ListArray) -> sp.csr_matrix:
        return self._tfidf.transform(self.counts(tokens)).astype(np.float32).tocsr()

    def weights(self, tokens: pa.ListArray) -> sp.csr_matrix:
        """Per-question word weights for the weighted mean, by `weighting`."""
        counts = self.counts(tokens)
        if self.weighting == "tfidf":
            return self._tfidf.transform(counts).astype(np.float32, copy=False).tocsr()
        if self.weighting == "idf":
            presence = counts.copy()
            presence.data[:] = 1.0
            return (presence @ sp.diags(self.idf)).tocsr()
        return counts

    def embed(self, tokens: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of word vectors per question; mask of questions with no known word."""
        weights = self.weights(tokens)
        total = weights @ self.known
        empty = total <= 0
        # divide each row's weights by their sum first: cheaper than dividing the dense result
        scale = np.divide(1.0, total, out=np.zeros_like(total), where=~empty)
        summed = sparse_dense_product(sp.diags(scale.astype(np.float32)) @ weights, self.vectors)
        return summed, empty

    def token_ids(self, tokens: pa.ListArray) -> np.ndarray:
        """(n, max_len) int32 ids, post-padded with PAD_ID and truncated at max_len."""
        ids = pc.add(pc.index_in(tokens.flatten(), value_set=self._vocab_array), 2)
        ids = pc.fill_null(ids, OOV_ID).to_numpy(zero_copy_only=False)
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
        )


def sparse_dense_product(sparse: sp.csr_matrix, dense: np.ndarray) -> np.ndarray:
    """`sparse @ dense` in float32, split into row blocks computed on all cores.

    scipy releases the GIL in its sparse kernels, so threads scale; more blocks than cores
    evens out the load.
    """
    out = np.empty((sparse.shape[0], dense.shape[1]), dtype=np.float32)
    n_blocks = 2 * (os.cpu_count() or 1) if sparse.shape[0] >= 20_000 else 1
    bounds = np.linspace(0, sparse.shape[0], n_blocks + 1).astype(np.int64)

    def block(i: int) -> None:
        out[bounds[i] : bounds[i + 1]] = sparse[bounds[i] : bounds[i + 1]] @ dense

    with ThreadPoolExecutor(n_blocks) as pool:
        list(pool.map(block, range(n_blocks)))
    return out


def _row_ids(tokens: pa.ListArray) -> np.ndarray:
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def _count_matrix(tokens: pa.ListArray, vocab: pa.Array) -> sp.csr_matrix:
    """(n_questions, V) token counts; words outside `vocab` are left out."""
    ids = pc.index_in(tokens.flatten(), value_set=vocab)
    known = pc.is_valid(ids).to_numpy(zero_copy_only=False)
    cols = ids.filter(pc.is_valid(ids)).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = _row_ids(tokens)[known]
    matrix = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(tokens), len(vocab))
    )
    matrix.sum_duplicates()
    return matrix
