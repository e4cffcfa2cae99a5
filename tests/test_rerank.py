"""The learned re-ranker: its labels from the duplicate graph, its training on retrieved
candidates, and an index that carries it through save, load, add and find."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import INDEX_SETTINGS, run_cli

from pipeline.bundle import load_bundle
from pipeline.errors import InputError
from pipeline.find.evaluate import evaluate_retrieval
from pipeline.find.index import QuestionIndex
from pipeline.find.rerank import (
    CHARS_FILE,
    MODEL_FILE,
    _argmax_per_group,
    component_ids,
    duplicate_components,
    fit_reranker,
)
from pipeline.find.search import open_finder


def test_duplicates_of_duplicates_share_a_component_and_other_pairs_do_not():
    pairs = pd.DataFrame(
        {
            "question1": ["How do I cook rice?", "How to cook rice?", "Is tea good?", "A?"],
            "question2": ["How to cook rice?", "Best way to cook rice?", "Is coffee good?", "B?"],
            "is_duplicate": [1, 1, 0, 1],
        }
    )
    components = duplicate_components([pairs], "NFKC")
    ids = component_ids(
        components,
        [
            "How do I cook rice?",
            "Best way to cook rice?",
            "A?",
            "B?",
            "Is tea good?",
            "Is coffee good?",
        ],
    )
    assert ids[0] == ids[1] >= 0 and ids[2] == ids[3] >= 0 and ids[0] != ids[2]
    # questions in no duplicate pair: a negative id each, so they match nothing, not each other
    assert ids[4] < 0 and ids[5] < 0 and ids[4] != ids[5]


def test_argmax_per_group_finds_each_groups_best_offset():
    values = np.array([0.1, 0.9, 0.3, 5.0, -1.0, 2.0, 2.5])
    assert _argmax_per_group(values, np.array([3, 1, 3])).tolist() == [1, 0, 2]


@pytest.fixture(scope="module")
def learned(featurized, bundles):
    """A re-ranker fitted on the tiny featurized data, with the logreg bundle's text model."""
    processed = featurized["paths"]["processed"]
    splits = {s: pd.read_parquet(f"{processed}/{s}.parquet") for s in ("train", "val", "test")}
    bundle = load_bundle(bundles["logreg"])
    reranker, info = fit_reranker(bundle, INDEX_SETTINGS, splits)
    return bundle, splits, reranker, info


def test_it_learns_from_retrieved_candidates_and_reports_what_it_saw(learned):
    bundle, splits, reranker, info = learned
    assert 0 < info["train_queries"] <= INDEX_SETTINGS["rerank_queries"]
    assert info["train_candidates"] <= info["train_queries"] * INDEX_SETTINGS["candidates"]
    assert 1 <= info["rounds"] <= INDEX_SETTINGS["rerank_rounds"]
    assert info["val_queries_with_a_duplicate_candidate"] <= info["val_queries"]
    assert np.isfinite(reranker.threshold)
    metrics = evaluate_retrieval(bundle, INDEX_SETTINGS, splits, reranker=reranker)
    every = f"recall@{INDEX_SETTINGS['candidates']}"
    # it only reorders the candidates
    assert metrics["learned"][every] == metrics["candidates"][every]
    assert metrics["learned"]["recall@1"] <= metrics["learned"]["mrr"] <= metrics["learned"][every]
    for name in ("flag_reranked", "flag_learned"):
        flag = metrics[name]
        assert flag["queries"] >= metrics["queries"] and 0 <= flag["flagged"] <= 1


@pytest.fixture
def learned_index(learned, tmp_path):
    bundle, splits, reranker, _ = learned
    questions = pd.concat([splits["train"]["question1"], splits["train"]["question2"]])
    index = QuestionIndex.build(questions.unique(), None, bundle, INDEX_SETTINGS, 0.5, reranker)
    index.save(tmp_path / "index")
    return tmp_path / "index"


def test_find_ranks_and_flags_by_the_learned_score(learned, learned_index):
    _, splits, reranker, _ = learned
    finder = open_finder(learned_index)
    assert finder.index.reranker is not None
    assert finder.index.reranker.threshold == pytest.approx(reranker.threshold)
    queries = splits["test"]["question1"].iloc[:20]
    matches = finder.find(queries, top_k=5)
    assert (matches["error"] == "").all()
    assert (matches.groupby("query_row")["score"].diff().dropna() <= 0).all()
    assert (matches["duplicate"] == (matches["score"] >= reranker.threshold)).all()
    # the score is the re-ranker's, for the same candidates, however they are batched
    alone = finder.find(queries.iloc[[3]], top_k=5)
    together = matches[matches["query_row"] == 3].reset_index(drop=True)
    np.testing.assert_allclose(alone["score"], together["score"], rtol=1e-6)
    # each match's probability is the pair model's, as dupq-score gives it for the pair
    first = queries.iloc[matches["query_row"]].tolist()
    _, probability = finder.bundle.score(first, matches["bank_question"].tolist())
    np.testing.assert_allclose(matches["probability"], probability, rtol=1e-5)


def test_an_add_keeps_the_reranker_and_damage_to_it_is_a_clear_error(learned_index, tmp_path):
    more = tmp_path / "more.csv"
    pd.DataFrame({"question": ["How do I train a puppy?"]}).to_csv(more, index=False)
    result = run_cli("pipeline.find", "--index", learned_index, "--add", more)
    assert result.returncode == 0, result.stderr
    meta = json.loads((learned_index / "index.json").read_text())
    assert meta["reranker"]["features"][:2] == ["candidate_score", "candidate_rank"]
    finder = open_finder(learned_index)
    assert finder.index.reranker is not None and len(finder.index.bank) == meta["questions"]
    bundle = finder.bundle
    (learned_index / MODEL_FILE).write_text("tree\nnot a model\n")
    with pytest.raises(InputError, match=f"index corrupted: {MODEL_FILE}"):
        QuestionIndex.load(learned_index, bundle)
    (learned_index / CHARS_FILE).unlink()
    with pytest.raises(InputError, match=f"incomplete index, missing {CHARS_FILE}"):
        QuestionIndex.load(learned_index, bundle)


def test_a_train_split_without_duplicates_is_a_clear_error(learned):
    bundle, splits, _, _ = learned
    no_duplicates = {**splits, "train": splits["train"].assign(is_duplicate=0)}
    with pytest.raises(InputError, match="index.rerank: blend"):
        fit_reranker(bundle, INDEX_SETTINGS, no_duplicates)
