"""The learned re-ranker: LightGBM lambdarank over each (query, candidate)'s retrieval score,
rank and pair features, trained on the candidates the index itself retrieves.

Pair models learn from Quora's sampled pairs, which hold few of the near misses that
retrieval surfaces ("learn Python quickly" / "lose weight quickly"). The re-ranker learns from
those near misses: each train question with known duplicates is a query, the nearest train
questions are its candidates, and a candidate is relevant when the duplicate graph joins the two
(duplicates of duplicates count). Its rounds are chosen on the val split's queries, against a
bank of train and val questions; no test question or label is seen. The pair model's
probability is not a feature: on train questions it has seen the labels, so it would look
better there than on new questions.

The `duplicate` flag of a match compares its score with a threshold chosen on val queries for
the top hit (every val question as a query, with or without a known duplicate): the cut that
makes "the top hit is a known duplicate" most often right.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from pipeline.errors import InputError
from pipeline.find.candidates import LexicalIndex, candidates
from pipeline.find.index import QuestionEncoder, new_faiss_index
from pipeline.io import load_npz, save_npz
from pipeline.metrics import choose_threshold
from pipeline.pair_features import (
    FEATURE_NAMES,
    QuestionTable,
    fit_char_idf,
    pair_features,
    unit_word_vectors,
)
from pipeline.text import normalize

log = logging.getLogger("find")
MODEL_FILE, CHARS_FILE = "reranker.txt", "reranker_chars.npz"
FEATURES = ("candidate_score", "candidate_rank", *FEATURE_NAMES)
QUERY_BATCH = 1024  # queries featurized together: 51k pairs with 50 candidates each


def duplicate_components(frames, form: str) -> pd.Series:
    """Normalized question -> its component in the graph of known duplicate pairs."""
    duplicates = pd.concat([f[f["is_duplicate"] == 1] for f in frames])
    first = normalize(duplicates["question1"], form).to_numpy(object)
    second = normalize(duplicates["question2"], form).to_numpy(object)
    codes, texts = pd.factorize(np.concatenate([first, second]))
    n = len(texts)
    graph = sp.coo_matrix((np.ones(len(first)), (codes[: len(first)], codes[len(first) :])), (n, n))
    _, labels = sp.csgraph.connected_components(graph, directed=False)
    return pd.Series(labels, index=pd.Index(texts, dtype=object))


def component_ids(components: pd.Series, texts) -> np.ndarray:
    """Each text's component; a distinct negative id for a text in none, so it matches none."""
    found = components.reindex(pd.Index(np.asarray(texts, dtype=object))).to_numpy(float, copy=True)
    alone = np.isnan(found)
    found[alone] = -1 - np.arange(int(alone.sum()))
    return found.astype(np.int64)


class CandidateFeatures:
    """(query, candidate) -> FEATURES, the pair features through the text model's vocabulary
    and this re-ranker's character n-gram idf."""

    def __init__(self, text_model, char_idf: np.ndarray):
        self.text_model, self.char_idf = text_model, char_idf
        self.unit = unit_word_vectors(text_model)

    def __call__(self, queries, bank_texts: np.ndarray, scores, rows) -> np.ndarray:
        """One row per present candidate (row >= 0), query by query, in rank order."""
        n, k = rows.shape
        present = rows >= 0
        texts = np.concatenate([np.asarray(queries, dtype=object), bank_texts[rows[present]]])
        codes, distinct = pd.factorize(texts)
        table = QuestionTable.build(
            pd.Series(distinct, dtype="string"), self.text_model, self.char_idf
        )
        first = np.repeat(codes[:n], k).reshape(n, k)[present]
        pair = pair_features(table[first], table[codes[n:]], self.unit)
        rank = np.broadcast_to(np.arange(k, dtype=np.float32), (n, k))[present]
        return np.column_stack([scores[present], rank, pair]).astype(np.float32)


@dataclass
class Reranker:
    booster: object  # lightgbm.Booster
    features: CandidateFeatures
    threshold: float  # on the score: a match at or above it is flagged a duplicate

    def scores(self, queries, bank_texts: np.ndarray, scores, rows) -> np.ndarray:
        """(n, k) ranking score of each candidate; -inf where there is none."""
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        present = rows >= 0
        if present.any():
            out[present] = self.booster.predict(self.features(queries, bank_texts, scores, rows))
        return out

    def save(self, directory: Path) -> dict:
        """Write the model files; returns what index.json records of the re-ranker."""
        self.booster.save_model(
            str(directory / MODEL_FILE), num_iteration=self.booster.best_iteration
        )
        save_npz(directory / CHARS_FILE, idf=self.features.char_idf)
        return {"threshold": self.threshold, "features": list(FEATURES)}

    @classmethod
    def load(cls, directory: Path, meta: dict, text_model) -> Reranker:
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        except lgb.basic.LightGBMError as err:
            raise ValueError(f"{MODEL_FILE}: not a LightGBM model ({err})") from None
        if booster.feature_name() != list(FEATURES):
            raise ValueError(
                f"{MODEL_FILE} was trained on features {booster.feature_name()}; this dupq "
                f"computes {list(FEATURES)} (rebuild the index: dvc repro index)"
            )
        char_idf = load_npz(directory / CHARS_FILE)["idf"]
        return cls(booster, CandidateFeatures(text_model, char_idf), float(meta["threshold"]))


@dataclass
class Bank:
    """Distinct normalized questions in a FAISS index (and the lexical one, when the settings
    ask for it), with their components."""

    texts: np.ndarray  # object array
    vectors: np.ndarray
    index: object
    lexical: LexicalIndex | None
    lexical_share: float
    components: np.ndarray

    @classmethod
    def build(cls, texts: pd.Series, encoder: QuestionEncoder, settings: dict, components):
        texts = pd.Series(pd.unique(texts.dropna()), dtype="string")
        vectors = encoder.vectors(texts)
        index = new_faiss_index(vectors.shape[1], settings)
        index.add(vectors)
        lexical = None
        if settings["lexical_share"] > 0:
            lexical = LexicalIndex(encoder.text_model, settings["lexical_max_df"])
            lexical.add(texts)
        texts = texts.to_numpy(object)
        share = settings["lexical_share"]
        return cls(texts, vectors, index, lexical, share, component_ids(components, texts))

    def grow(self, texts: pd.Series, encoder: QuestionEncoder, components: pd.Series) -> None:
        """Add the `texts` not in the bank yet, and take every row's component anew."""
        new = pd.Series(pd.unique(texts.dropna()), dtype="string")
        new = new[~new.isin(self.texts)].to_numpy(object)
        vectors = encoder.vectors(pd.Series(new, dtype="string"))
        self.index.add(vectors)
        if self.lexical is not None:
            self.lexical.add(pd.Series(new, dtype="string"))
        self.texts = np.concatenate([self.texts, new])
        self.vectors = np.concatenate([self.vectors, vectors])
        self.components = component_ids(components, self.texts)

    def rows_of(self, texts) -> np.ndarray:
        return pd.Index(self.texts).get_indexer(np.asarray(texts, dtype=object))

    def candidates(self, query_rows: np.ndarray, k: int, index=None):
        """(index cosine, bank rows) of the k candidates of queries that are bank rows, their
        own rows left out, as `dupq-find` retrieves them (from `index`, when given, instead of
        the bank's own vector index)."""
        unit_rows = None if self.lexical is None else self.lexical.rows[query_rows]
        return candidates(
            self.index if index is None else index,
            self.lexical,
            self.vectors[query_rows],
            unit_rows,
            k,
            self.lexical_share,
            own=query_rows,
        )

    def groups(self, features: CandidateFeatures, query_rows: np.ndarray, k: int, what: str):
        """(features, relevance, candidates per query) of the queries' candidates."""
        parts, labels, sizes = [], [], []
        batches = range(0, len(query_rows), QUERY_BATCH)
        for start in tqdm(batches, desc=f"re-ranker: {what} queries", unit="batch", leave=False):
            batch = query_rows[start : start + QUERY_BATCH]
            scores, rows = self.candidates(batch, k)
            present = rows >= 0
            parts.append(features(self.texts[batch], self.texts, scores, rows))
            same = self.components[np.where(present, rows, 0)] == self.components[batch, None]
            labels.append(same[present])
            sizes.append(present.sum(axis=1))
        return np.concatenate(parts), np.concatenate(labels), np.concatenate(sizes)


def _questions(frame: pd.DataFrame, form: str) -> pd.Series:
    return normalize(pd.concat([frame["question1"], frame["question2"]]), form)


def _with_relevant(x, labels, sizes):
    """Only the queries with a relevant candidate: the others teach a ranker nothing."""
    query = np.repeat(np.arange(len(sizes)), sizes)
    keep_query = np.bincount(query, weights=labels, minlength=len(sizes)) > 0
    keep = keep_query[query]
    return x[keep], labels[keep], sizes[keep_query]


def fit_reranker(bundle, settings: dict, splits: dict) -> tuple[Reranker, dict]:
    """Train on the train split's queries, choose rounds and the flag's threshold on val's."""
    import lightgbm as lgb

    start = time.perf_counter()
    form = bundle.text_model.text.unicode_form
    encoder = QuestionEncoder.for_settings(bundle.text_model, settings)
    k = settings["candidates"]
    train_questions = _questions(splits["train"], form)
    char_idf = fit_char_idf(train_questions.dropna(), bundle.text_model)
    features = CandidateFeatures(bundle.text_model, char_idf)
    bank = Bank.build(
        train_questions, encoder, settings, duplicate_components([splits["train"]], form)
    )
    known = bank.components >= 0
    texts_per_component = np.bincount(bank.components[known], minlength=1)
    in_group = np.flatnonzero(
        known & (texts_per_component[np.where(known, bank.components, 0)] > 1)
    )
    rng = np.random.default_rng(settings["seed"])
    picked = np.sort(rng.permutation(in_group)[: settings["rerank_queries"]])
    log.info("re-ranker: %d train queries of %d with known duplicates", len(picked), len(in_group))
    if len(picked):
        x_train, y_train, g_train = _with_relevant(*bank.groups(features, picked, k, "train"))
    if not len(picked) or not len(g_train):
        raise InputError(
            "index.rerank: learned needs train questions with a known duplicate among their "
            f"{k} candidates, and the train split has none; use index.rerank: blend"
        )

    # val queries look among the train and val questions, with both splits' labels
    bank.grow(
        _questions(splits["val"], form),
        encoder,
        duplicate_components([splits["train"], splits["val"]], form),
    )
    val_queries = bank.rows_of(pd.unique(normalize(splits["val"]["question1"], form).dropna()))
    x_val, y_val, g_val = bank.groups(features, val_queries, k, "val")
    settings_lgb = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [1, 10],
        "learning_rate": settings["rerank_learning_rate"],
        "num_leaves": settings["rerank_leaves"],
        "min_child_samples": 20,
        "seed": settings["seed"],
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    names = list(FEATURES)
    train_set = lgb.Dataset(x_train, y_train.astype(int), group=g_train, feature_name=names)
    xv, yv, gv = _with_relevant(x_val, y_val, g_val)
    val_set = lgb.Dataset(xv, yv.astype(int), group=gv, feature_name=names, reference=train_set)
    booster = lgb.train(
        settings_lgb,
        train_set,
        num_boost_round=settings["rerank_rounds"],
        valid_sets=[val_set],
        callbacks=[
            lgb.early_stopping(
                settings["rerank_early_stopping"], first_metric_only=True, verbose=False
            )
        ],
    )
    ranker = Reranker(booster, features, 0.0)
    # the flag: every val question as a query, its top hit right or not
    scored = booster.predict(x_val, num_iteration=booster.best_iteration)
    answered = g_val[g_val > 0]
    top = np.r_[0, np.cumsum(answered)[:-1]] + _argmax_per_group(scored, answered)
    ranker.threshold = choose_threshold(y_val[top], scored[top], "accuracy")
    info = {
        "train_queries": int(len(g_train)),
        "train_candidates": int(len(y_train)),
        "val_queries": int(len(answered)),
        "val_queries_with_a_duplicate_candidate": int(len(gv)),
        "rounds": int(booster.best_iteration or booster.current_iteration()),
        "val_ndcg@1": round(float(booster.best_score["valid_0"]["ndcg@1"]), 4),
        "threshold": round(float(ranker.threshold), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info("re-ranker: %s", info)
    return ranker, info


def _argmax_per_group(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Offset of each group's largest value within the group (groups laid end to end)."""
    group = np.repeat(np.arange(len(sizes)), sizes)
    order = np.lexsort((-values, group))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    return order[starts] - starts
