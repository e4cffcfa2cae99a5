"""How well the index finds known duplicates: recall@k of the nearest questions and after
re-ranking, and the blend of the two scores chosen on the validation split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.bundle import Bundle
from pipeline.find.index import QuestionEncoder, QuestionIndex, new_faiss_index
from pipeline.find.search import Finder, ranking_score
from pipeline.text import normalize


def _recall_at(rows: np.ndarray, targets: np.ndarray, ks) -> dict:
    hit = rows == targets[:, None]
    return {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks}


BLENDS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # weights of the candidate score tried


def evaluate_retrieval(
    bundle: Bundle, settings: dict, splits: dict[str, pd.DataFrame], blend: float | None = None
) -> dict:
    """How often the known duplicate of a test question is found, with every question of
    every split in the bank: recall@k of the nearest neighbours (approximate, and exact with
    the same vectors), and after re-ranking them, with the re-ranked MRR. The re-ranking's
    blend of model and index scores is `blend`, or else the one of BLENDS with the best MRR
    on the validation split's duplicates."""
    form = bundle.text_model.text.unicode_form
    every = pd.concat([f[c] for f in splits.values() for c in ("question1", "question2")])
    bank_texts = pd.Series(pd.unique(normalize(every, form).dropna()), dtype="string")
    encoder = QuestionEncoder.for_settings(bundle.text_model, settings)
    vectors = encoder.vectors(bank_texts)
    approximate = new_faiss_index(vectors.shape[1], settings)
    exact = new_faiss_index(vectors.shape[1], {"kind": "flat"})
    approximate.add(vectors)
    exact.add(vectors)
    bank = pd.DataFrame({"bank_id": bank_texts.index.astype(str), "question": bank_texts})
    bank["normalized"] = bank_texts
    finder = Finder(QuestionIndex(approximate, bank, {}, encoder), bundle, settings["candidates"])
    k = settings["candidates"]
    ks = sorted({n for n in (1, 5, 10, 50) if n <= k} | {k})
    position = pd.Index(bank_texts)

    def known_duplicates(split: pd.DataFrame):
        duplicates = split[split["is_duplicate"] == 1]
        queries = normalize(duplicates["question1"], form).reset_index(drop=True)
        targets = normalize(duplicates["question2"], form).reset_index(drop=True)
        asked = (queries != targets).to_numpy()  # a pair of one text twice has nothing to find
        queries = queries[asked].reset_index(drop=True)
        return queries, position.get_indexer(queries), position.get_indexer(targets[asked])

    def nearest(index, query_rows):
        cosine, rows = index.search(vectors[query_rows], k + 1)
        others = rows != query_rows[:, None]  # the bank holds the query itself: skip it
        order = np.argsort(~others, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(cosine, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def reranked(queries, cosine, rows, weight):
        probability = finder.rerank(queries, rows)
        order = np.argsort(-ranking_score(probability, cosine, weight), axis=1, kind="stable")
        return np.take_along_axis(rows, order, axis=1), probability

    def mrr(rows, target_rows):
        found = rows == target_rows[:, None]
        rank = np.where(found.any(axis=1), found.argmax(axis=1) + 1, np.inf)
        return float(np.mean(1 / rank))

    if blend is None:
        queries, query_rows, target_rows = known_duplicates(splits["val"])
        cosine, rows = nearest(approximate, query_rows)
        probability = finder.rerank(queries, rows)
        scores = {
            weight: mrr(
                np.take_along_axis(
                    rows, np.argsort(-ranking_score(probability, cosine, weight), axis=1), axis=1
                ),
                target_rows,
            )
            for weight in BLENDS
        }
        blend = float(max(scores, key=scores.get))
    queries, query_rows, target_rows = known_duplicates(splits["test"])
    cosine, candidates = nearest(approximate, query_rows)
    by_model, _ = reranked(queries, cosine, candidates, 0.0)
    final, _ = reranked(queries, cosine, candidates, blend)
    result = {
        "bank_questions": len(bank_texts),
        "queries": len(queries),
        "blend": blend,
        "candidates": {
            **_recall_at(candidates, target_rows, ks),
            "mrr": mrr(candidates, target_rows),
        },
        "exact": _recall_at(nearest(exact, query_rows)[1], target_rows, ks),
        "model_only": {**_recall_at(by_model, target_rows, ks), "mrr": mrr(by_model, target_rows)},
        "reranked": {**_recall_at(final, target_rows, ks), "mrr": mrr(final, target_rows)},
    }
    exact_at_10 = result["exact"].get("recall@10")
    if exact_at_10:
        result["reranked_recall@10_over_exact"] = result["reranked"]["recall@10"] / exact_at_10
    return result
