"""How well the index finds known duplicates: recall@k and MRR of the nearest questions and
after re-ranking (the blend of pair model and index scores, and the learned re-ranker), and the
precision of the `duplicate` flag on each query's top hit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.bundle import Bundle
from pipeline.find.index import QuestionEncoder, QuestionIndex, new_faiss_index
from pipeline.find.rerank import Bank, component_ids, duplicate_components
from pipeline.find.search import Finder, ranking_score
from pipeline.text import normalize

BLENDS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # weights of the candidate score tried


def _found(rows: np.ndarray, query_rows: np.ndarray, components: np.ndarray) -> np.ndarray:
    """(queries, k): whether each ranked bank row is a known duplicate of its query."""
    return (rows >= 0) & (components[np.maximum(rows, 0)] == components[query_rows, None])


def _ranked(rows: np.ndarray, score: np.ndarray) -> np.ndarray:
    return np.take_along_axis(rows, np.argsort(-score, axis=1, kind="stable"), axis=1)


def _recall(found: np.ndarray, ks) -> dict:
    return {f"recall@{k}": float(found[:, :k].any(axis=1).mean()) for k in ks}


def _mrr(found: np.ndarray) -> float:
    rank = np.where(found.any(axis=1), found.argmax(axis=1) + 1, np.inf)
    return float(np.mean(1 / rank))


def _flag(top_found: np.ndarray, flagged: np.ndarray) -> dict:
    """How the `duplicate` flag of each query's top hit fares."""
    return {
        "queries": len(flagged),
        "flagged": float(flagged.mean()),
        "precision@1": float(top_found[flagged].mean()) if flagged.any() else float("nan"),
        "accuracy": float((top_found == flagged).mean()),
    }


def evaluate_retrieval(
    bundle: Bundle,
    settings: dict,
    splits: dict[str, pd.DataFrame],
    blend: float | None = None,
    reranker=None,
) -> dict:
    """How often the known duplicates of test questions are found, with every question of
    every split in the bank (the query's own row skipped). The queries are the first
    questions of the test split's duplicate pairs; a match is found when the graph of known
    duplicates joins it to the query (duplicates of duplicates count). Rows: the candidates (as
    `dupq-find` retrieves them, and with an exact vector search), the pair model alone, the blend
    of model and index scores (`blend`, or else the one of BLENDS with the best MRR on the val
    split's queries, whose duplicates come from train and val labels only), and the learned
    `reranker` when given. `flag_*`: the `duplicate` flag of the top hit of every distinct
    first question of the test split, with or without a known duplicate."""
    form = bundle.text_model.text.unicode_form
    every = normalize(
        pd.concat([f[c] for f in splits.values() for c in ("question1", "question2")]), form
    )
    encoder = QuestionEncoder.for_settings(bundle.text_model, settings)
    bank = Bank.build(every, encoder, settings, duplicate_components(splits.values(), form))
    exact = new_faiss_index(bank.vectors.shape[1], {"kind": "flat"})
    exact.add(bank.vectors)
    # the labels that choices may use: train and val only
    seen = component_ids(duplicate_components([splits["train"], splits["val"]], form), bank.texts)
    k = settings["candidates"]
    ks = sorted({n for n in (1, 5, 10, 50) if n <= k} | {k})
    frame = pd.DataFrame({"bank_id": np.arange(len(bank.texts)).astype(str)})
    frame["question"] = frame["normalized"] = pd.Series(bank.texts, dtype="string")
    finder = Finder(QuestionIndex(bank.index, frame, {}, encoder), bundle, k)

    def queries_of(pairs: pd.DataFrame) -> np.ndarray:
        """Bank rows of the pairs' distinct first questions (a pair of one text twice has
        nothing to find)."""
        first, second = normalize(pairs["question1"], form), normalize(pairs["question2"], form)
        asked = (first != second).fillna(False).to_numpy()
        return bank.rows_of(pd.unique(first[asked].dropna()))

    def duplicates(split: pd.DataFrame) -> pd.DataFrame:
        return split[split["is_duplicate"] == 1]

    def candidates(query_rows):
        scores, rows = bank.candidates(query_rows, k)
        queries = pd.Series(bank.texts[query_rows], dtype="string")
        return queries, scores, rows, finder.rerank(queries, rows)

    if blend is None:
        val_rows = queries_of(duplicates(splits["val"]))
        _, scores, rows, probability = candidates(val_rows)
        mrr = {
            weight: _mrr(
                _found(_ranked(rows, ranking_score(probability, scores, weight)), val_rows, seen)
            )
            for weight in BLENDS
        }
        blend = float(max(mrr, key=mrr.get))
    test_rows = queries_of(duplicates(splits["test"]))
    queries, scores, rows, probability = candidates(test_rows)
    by = {
        "candidates": rows,
        "model_only": _ranked(rows, ranking_score(probability, scores, 0.0)),
        "reranked": _ranked(rows, ranking_score(probability, scores, blend)),
    }
    if reranker is not None:
        by["learned"] = _ranked(rows, reranker.scores(queries, bank.texts, scores, rows))
    result = {"bank_questions": len(bank.texts), "queries": len(test_rows), "blend": blend}
    for name, ranked in by.items():
        found = _found(ranked, test_rows, bank.components)
        result[name] = {**_recall(found, ks), "mrr": _mrr(found)}
    exact_rows = bank.candidates(test_rows, k, index=exact)[1]
    result["exact"] = _recall(_found(exact_rows, test_rows, bank.components), ks)
    exact_at_10 = result["exact"].get("recall@10")
    if exact_at_10:
        result["reranked_recall@10_over_exact"] = result["reranked"]["recall@10"] / exact_at_10

    every_first = queries_of(splits["test"])
    queries, scores, rows, probability = candidates(every_first)
    ranking = ranking_score(probability, scores, blend)
    top = np.argmax(ranking, axis=1)[:, None]
    top_found = _found(np.take_along_axis(rows, top, axis=1), every_first, bank.components)[:, 0]
    top_probability = np.take_along_axis(probability, top, axis=1)[:, 0]
    result["flag_reranked"] = _flag(top_found, top_probability >= bundle.threshold)
    if reranker is not None:
        learned = reranker.scores(queries, bank.texts, scores, rows)
        top = np.argmax(learned, axis=1)[:, None]
        top_found = _found(np.take_along_axis(rows, top, axis=1), every_first, bank.components)
        top_score = np.take_along_axis(learned, top, axis=1)[:, 0]
        result["flag_learned"] = _flag(top_found[:, 0], top_score >= reranker.threshold)
    return result
