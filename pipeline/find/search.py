"""Finding a question's known duplicates: its nearest questions in the index, re-ranked by the
index's learned re-ranker (`find.rerank`) or else by a blend of the index's score and a pair
model's probability, through the bundle's own scoring code."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from pipeline.bundle import Bundle, Pairs, load_bundle, same_question_keys
from pipeline.find.index import QuestionIndex
from pipeline.tables import concat_rows

QUERIES_PER_BATCH = 1024  # queries re-ranked together: 51k pairs with 50 candidates each
OUTPUT_COLUMNS = (
    "query_row",
    "query",
    "rank",
    "bank_row",
    "bank_id",
    "bank_question",
    "candidate_score",
    "probability",
    "score",
    "duplicate",
    "error",
)


class Finder:
    """Questions in, their likely duplicates among the bank's questions out."""

    def __init__(self, index: QuestionIndex, bundle: Bundle, candidates: int, blend: float = 0.0):
        self.index, self.bundle, self.candidates, self.blend = index, bundle, candidates, blend
        self.batch = 8192  # pairs per call of the model's per-pair part

    def find(self, queries, top_k: int) -> pd.DataFrame:
        """One row per (query, match) for the top_k matches by `score`: the learned
        re-ranker's, or else `ranking_score`. `duplicate` is that score at the re-ranker's
        threshold, or else the pair model's probability at the bundle's threshold. A query
        that is missing, not text or empty keeps one row with its error."""
        if queries is None or isinstance(queries, str | bytes):
            raise ValueError(
                f"queries must be a sequence of questions, got {type(queries).__name__}"
            )
        queries = pd.Series(queries).reset_index(drop=True)
        checked = Pairs.from_columns(queries, queries, self.bundle.text_model.text)
        errors = pd.Series(checked.errors).str.replace("question1 is", "query is", regex=False)
        valid = np.flatnonzero(checked.valid)
        matches = [self._errors(queries, errors)]
        for start in range(0, len(valid), QUERIES_PER_BATCH):
            rows = valid[start : start + QUERIES_PER_BATCH]
            normalized = checked.questions.iloc[checked.first[rows]].reset_index(drop=True)
            scores, bank_rows = self.candidates_of(normalized)
            matches.append(self._top(queries, rows, normalized, scores, bank_rows, top_k))
        out = concat_rows(matches)
        reranker = self.index.reranker
        flagged = out["probability"] >= self.bundle.threshold
        if reranker is not None:
            flagged = out["score"] >= reranker.threshold
        out["duplicate"] = flagged.astype("boolean")
        out.loc[out["error"] != "", "duplicate"] = pd.NA
        return out.sort_values(["query_row", "rank"], kind="stable", ignore_index=True)[
            list(OUTPUT_COLUMNS)
        ]

    def candidates_of(self, normalized: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(vector index cosine, bank row) of each query's candidates."""
        return self.index.candidates(normalized, self.candidates)

    def rerank(self, normalized: pd.Series, bank_rows: np.ndarray) -> np.ndarray:
        """The pair model's P(duplicate) for each (query, candidate); NaN where no candidate."""
        n, k = bank_rows.shape
        present = bank_rows >= 0
        candidates = self.index.column("normalized")[bank_rows[present]]
        codes, texts = pd.factorize(np.concatenate([normalized.to_numpy(object), candidates]))
        first = np.repeat(codes[:n], k).reshape(n, k)[present]
        second = codes[n:]
        questions = pd.Series(texts, dtype="string")
        encodings = self.bundle.encode_questions(self.bundle.model_inputs(questions), self.batch)
        raw = self.bundle.raw_from_encodings(encodings, first, second, self.batch)
        probability = np.full((n, k), np.nan, dtype=np.float32)
        keys = same_question_keys(questions, self.bundle.text_model.text)
        probability[present] = self.bundle.probability(raw, keys[first] == keys[second])
        return probability

    def _top(self, queries, rows, normalized, scores, bank_rows, top_k) -> pd.DataFrame:
        """The top_k matches of each query, by the learned re-ranker's score (the pair model's
        probability then computed for those matches only) or else by `ranking_score`."""
        learned = self.index.reranker
        if learned is None:
            probability = self.rerank(normalized, bank_rows)
            ranking = ranking_score(probability, scores, self.blend)
        else:
            bank = self.index.column("normalized")
            ranking = learned.scores(normalized.to_numpy(object), bank, scores, bank_rows)
        order = np.argsort(-ranking, axis=1, kind="stable")[:, :top_k]
        picked = np.take_along_axis(bank_rows, order, axis=1)
        probability = (
            np.take_along_axis(probability, order, axis=1)
            if learned is None
            else self.rerank(normalized, picked)  # the matches shown, not every candidate
        )
        present = picked >= 0
        query_of = np.repeat(rows, order.shape[1]).reshape(order.shape)[present]
        return pd.DataFrame(
            {
                "query_row": query_of,
                "query": queries.iloc[query_of].to_numpy(object),
                "rank": np.tile(np.arange(1, order.shape[1] + 1), (len(rows), 1))[present],
                "bank_row": picked[present],
                "bank_id": self.index.column("bank_id")[picked[present]],
                "bank_question": self.index.column("question")[picked[present]],
                "candidate_score": np.take_along_axis(scores, order, axis=1)[present],
                "probability": probability[present],
                "score": np.take_along_axis(ranking, order, axis=1)[present],
                "error": "",
            }
        )

    @staticmethod
    def _errors(queries: pd.Series, errors: pd.Series) -> pd.DataFrame:
        bad = np.flatnonzero(errors.to_numpy(object) != "")
        if not len(bad):
            return _no_errors()
        return _error_rows(queries, errors, bad)


@functools.cache
def _no_errors() -> pd.DataFrame:
    """The columns of error rows without rows: built once, as most batches have no error."""
    return _error_rows(pd.Series([], dtype=object), pd.Series([], dtype=object), np.array([], int))


def _error_rows(queries: pd.Series, errors: pd.Series, bad: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_row": bad,
            "query": queries.iloc[bad].astype(object).to_numpy(object),
            "rank": pd.array([pd.NA] * len(bad), dtype="Int64"),
            "bank_row": pd.array([pd.NA] * len(bad), dtype="Int64"),
            "bank_id": pd.array([pd.NA] * len(bad), dtype="string"),
            "bank_question": pd.array([pd.NA] * len(bad), dtype="string"),
            "candidate_score": np.full(len(bad), np.nan, np.float32),
            "probability": np.full(len(bad), np.nan, np.float32),
            "score": np.full(len(bad), np.nan, np.float32),
            "error": errors.iloc[bad].to_numpy(object),
        }
    )


def ranking_score(probability: np.ndarray, cosine: np.ndarray, blend: float) -> np.ndarray:
    """What matches are ranked by: (1 - blend) * P(duplicate) + blend * cosine; -inf where
    there is no candidate. blend 0 ranks by the pair model alone, 1 by the index alone."""
    score = (1.0 - blend) * probability + blend * cosine
    return np.where(np.isnan(probability), -np.inf, score)


def open_finder(index_dir, model_dir=None, candidates: int | None = None) -> Finder:
    """The index and its re-ranking bundle (the one it was built with, unless another is
    given), checked to belong together."""
    bundle = load_bundle(model_dir or QuestionIndex.read_meta(index_dir)["model"])
    index = QuestionIndex.load(index_dir, bundle)
    settings = index.meta["settings"]
    return Finder(index, bundle, candidates or settings["candidates"], index.meta["blend"])
