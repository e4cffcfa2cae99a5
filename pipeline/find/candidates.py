"""A query's candidates: its nearest bank questions in the vector index, joined with those of a
second source, the exact TF-IDF cosine over an inverted index of the bank.

The vector index searches TF-IDF rows randomly projected to `index.tfidf_dim` dimensions, and
the projection blurs the cosine: some known duplicates fall out of a query's nearest 50. This
index finds the bank questions that share a query's rarer words (a word in more than
`index.lexical_max_df` of the bank gathers no candidates: its postings are long and say
little), ranks the most promising of them by their exact cosine with the query, and
`merge_candidates` joins its list with the vector index's: the first
`index.candidates * (1 - index.lexical_share)` from the vector index, the rest from this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

POOL = 4  # candidates gathered by the rarer words per candidate kept, before exact cosine
QUERIES_PER_PRODUCT = 32  # queries whose postings are gathered in one sparse product
NO_SCORE = -np.finfo(np.float32).max  # the score where there is no candidate, as FAISS gives


@dataclass
class LexicalIndex:
    """Each bank question's unit TF-IDF row (the text model's words and idf), searched through
    the postings of the words."""

    text_model: object  # TextModel
    max_df: float  # a word in more than this share of the bank gathers no candidates
    rows: sp.csr_matrix = None
    _postings: sp.csr_matrix | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.rows is None:
            self.rows = sp.csr_matrix((0, len(self.text_model.vocab)), dtype=np.float32)

    def unit_rows(self, normalized: pd.Series) -> sp.csr_matrix:
        """The questions' TF-IDF rows scaled to unit length (a row without a known word is
        empty)."""
        tfidf = self.text_model.tfidf(self.text_model.tokens(normalized)).astype(np.float32)
        norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
        return (sp.diags(1 / np.maximum(norms, 1e-12)).astype(np.float32) @ tfidf).tocsr()

    def add(self, normalized: pd.Series) -> None:
        self.rows = sp.vstack([self.rows, self.unit_rows(normalized)], format="csr")
        self._postings = None

    @property
    def postings(self) -> sp.csr_matrix:
        """(vocabulary, bank) rows of the words gathering candidates; the other words' rows
        are empty. Built once per bank size."""
        if self._postings is None:
            postings = self.rows.T.tocsr()
            too_common = np.diff(postings.indptr) > self.max_df * self.rows.shape[0]
            postings = sp.diags((~too_common).astype(np.float32)) @ postings
            postings.eliminate_zeros()
            self._postings = postings.tocsr()
        return self._postings

    def search(self, queries: sp.csr_matrix, k: int, own: np.ndarray | None = None):
        """(exact cosine, bank rows) of each query's k best candidates (NO_SCORE, -1 where fewer
        share a word). `queries` are unit rows (`unit_rows`); `own` is each query's own bank
        row, left out (-1: none)."""
        own = np.full(queries.shape[0], -1) if own is None else np.asarray(own)
        parts = [
            self._search(queries[start : start + QUERIES_PER_PRODUCT], k, own[start:])
            for start in range(0, queries.shape[0], QUERIES_PER_PRODUCT)
        ]
        if not parts:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return tuple(np.concatenate(part) for part in zip(*parts, strict=True))

    def _search(self, queries: sp.csr_matrix, k: int, own: np.ndarray):
        n = queries.shape[0]
        shared = (queries @ self.postings).tocsr()  # the rarer words' part of the cosine
        query_of = np.repeat(np.arange(n), np.diff(shared.indptr))
        shared.data[shared.indices == own[query_of]] = 0
        shared.eliminate_zeros()
        pool = top_per_row(shared, POOL * k)
        present = pool >= 0
        cosine = np.full(pool.shape, NO_SCORE, np.float32)
        asked = np.repeat(np.arange(n), pool.shape[1]).reshape(pool.shape)[present]
        cosine[present] = np.asarray(
            queries[asked].multiply(self.rows[pool[present]]).sum(axis=1)
        ).ravel()
        order = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(cosine, order, axis=1), np.take_along_axis(pool, order, axis=1)


def candidates(index, lexical, vectors, unit_rows, k: int, share: float, own=None):
    """(vector index cosine, bank rows) of each query's k candidates, -1 where fewer exist.
    `vectors` are the queries' index vectors, `unit_rows` their TF-IDF rows for `lexical`
    (None: the vector index alone); `own` is each query's own bank row, left out."""
    scores, rows = nearest(index, vectors, k, own)
    if lexical is None or share <= 0:
        return scores, rows
    lexical_rows = lexical.search(unit_rows, k, own)[1]
    rows = merge_candidates(rows, lexical_rows, k, k - round(k * share))
    present = rows >= 0
    scores = np.full(rows.shape, NO_SCORE, dtype=np.float32)
    if present.any():
        bank_vectors = index.reconstruct_batch(rows[present])
        query_of = np.repeat(np.arange(len(rows)), k).reshape(rows.shape)[present]
        scores[present] = np.einsum("ij,ij->i", np.asarray(vectors)[query_of], bank_vectors)
    return scores, rows


def nearest(index, vectors: np.ndarray, k: int, own=None):
    """(scores, bank rows) of the k nearest bank questions (row -1 where fewer exist),
    skipping each query's `own` bank row when given."""
    k = max(1, min(k, index.ntotal))
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if own is None:
        return index.search(vectors, k)
    scores, rows = index.search(vectors, k + 1)
    others = rows != np.asarray(own)[:, None]
    order = np.argsort(~others, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def top_per_row(matrix: sp.csr_matrix, k: int) -> np.ndarray:
    """(rows, k) column indices of each row's k largest stored values, largest first; -1
    where a row stores fewer."""
    n = matrix.shape[0]
    row = np.repeat(np.arange(n), np.diff(matrix.indptr))
    order = np.lexsort((-matrix.data, row))
    position = np.arange(len(order)) - matrix.indptr[row[order]]
    keep = position < k
    out = np.full((n, k), -1, dtype=np.int64)
    out[row[order][keep], position[keep]] = matrix.indices[order][keep]
    return out


def merge_candidates(first: np.ndarray, second: np.ndarray, budget: int, from_first: int):
    """`budget` bank rows per query: `first`'s best `from_first`, then `second`'s best rows
    not among them, then `first`'s next ones (-1 where both run short). A row -1 is none."""
    combined = np.concatenate([first[:, :from_first], second, first[:, from_first:]], axis=1)
    order = np.argsort(combined, axis=1, kind="stable")  # a repeat sorts after its first
    in_order = np.take_along_axis(combined, order, axis=1)
    repeat = np.zeros(combined.shape, dtype=bool)
    repeat[:, 1:] = in_order[:, 1:] == in_order[:, :-1]
    seen_before = np.empty_like(repeat)
    np.put_along_axis(seen_before, order, repeat, axis=1)
    keep = ~seen_before & (combined >= 0)
    slot = np.cumsum(keep, axis=1) - 1
    keep &= slot < budget
    out = np.full((len(first), budget), -1, dtype=np.int64)
    out[np.nonzero(keep)[0], slot[keep]] = combined[keep]
    return out
