"""Finding the known duplicates of new questions: index, re-rank, add, and their errors."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import INDEX_SETTINGS, SHARED_TSV, needs_shared, our_lines, rehash, run_cli

from pipeline.bundle import load_bundle
from pipeline.errors import InputError
from pipeline.find.evaluate import BLENDS, evaluate_retrieval
from pipeline.find.index import QuestionIndex
from pipeline.find.search import open_finder
from pipeline.tables import open_table

BANK = [
    "How do I learn Python quickly?",
    "What is the capital of France?",
    "How can I lose weight fast?",
    "Which laptop is best for programming?",
    "Why is the sky blue?",
    "How do I cook rice in a pot?",
]


def cli(*args):
    return run_cli("pipeline.find", *args)


@pytest.fixture
def index_dir(bundles, tmp_path):
    bundle = load_bundle(bundles["logreg"])
    index = QuestionIndex.build(BANK, [f"q{i}" for i in range(len(BANK))], bundle, INDEX_SETTINGS)
    index.save(tmp_path / "index")
    return tmp_path / "index"


def test_round_trip_finds_the_known_question_first(bundles, index_dir):
    finder = open_finder(index_dir)
    assert finder.bundle.directory == bundles["logreg"]
    matches = finder.find(["how do I learn python quickly ?", "Why is the sky BLUE?"], top_k=3)
    first = matches[matches["rank"] == 1].set_index("query_row")
    assert first.loc[0, "bank_id"] == "q0" and first.loc[1, "bank_id"] == "q4"
    assert (first["probability"] == 1.0).all() and first["duplicate"].all()  # same text
    assert matches.groupby("query_row").size().tolist() == [3, 3]
    assert (matches.groupby("query_row")["probability"].diff().dropna() <= 0).all()


def test_a_querys_matches_do_not_depend_on_the_rest_of_its_batch(index_dir):
    """The service looks up concurrent requests as one batch: alone, first or last, a query
    gets the same matches and scores."""
    finder = open_finder(index_dir)
    queries = [*BANK, "How do I learn Python fast?", "Which laptop is good for coding?"]
    alone = {q: finder.find([q], top_k=4).drop(columns="query_row") for q in queries}
    for batch in (queries, queries[::-1]):
        together = finder.find(batch, top_k=4)
        for row, query in enumerate(batch):
            got = together[together["query_row"] == row].drop(columns="query_row")
            pd.testing.assert_frame_equal(
                got.reset_index(drop=True), alone[query].reset_index(drop=True)
            )


def test_queries_that_are_not_a_sequence_are_a_clear_error(index_dir):
    finder = open_finder(index_dir)
    for bad in (None, "How do I learn Python?"):
        with pytest.raises(ValueError, match="queries must be a sequence of questions"):
            finder.find(bad, top_k=3)


def test_a_query_with_an_error_keeps_its_row(index_dir):
    matches = open_finder(index_dir).find(["\u200b", "Why is the sky blue?", None], top_k=2)
    errors = matches.drop_duplicates("query_row").set_index("query_row")["error"]
    assert errors.to_dict() == {0: "query is empty", 1: "", 2: "query is missing"}


def test_add_questions_then_find_them_through_the_cli(index_dir, tmp_path):
    more = tmp_path / "more.csv"
    pd.DataFrame(
        {"id": ["n1", "n2"], "question": ["How do I train a puppy?", "What is a black hole?"]}
    ).to_csv(more, index=False)
    result = cli("--index", index_dir, "--add", more, "--id-col", "id")
    assert result.returncode == 0, result.stderr
    assert "added 2 of 2 questions; 8 in" in result.stderr
    assert (
        len(
            QuestionIndex.load(
                index_dir, load_bundle(QuestionIndex.read_meta(index_dir)["model"])
            ).bank
        )
        == 8
    )
    queries = tmp_path / "queries.csv"
    pd.DataFrame({"question": ["how do i train a puppy?", ""]}).to_csv(queries, index=False)
    result = cli(
        "--index", index_dir, "--input", queries, "--output", tmp_path / "m.csv", "--top-k", 2
    )
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "m.csv")
    best = out[(out["query_row"] == 0) & (out["rank"] == 1)].iloc[0]
    assert best["bank_id"] == "n1" and best["bank_question"] == "How do I train a puppy?"
    assert out[out["query_row"] == 1]["error"].tolist() == ["query is empty"]  # written ""
    assert out[out["query_row"] == 0]["error"].isna().all()
    single = cli("--index", index_dir, "--query", "What is a black hole?", "--top-k", 1)
    assert single.returncode == 0 and "What is a black hole?" in single.stdout


def test_an_index_that_does_not_match_the_bundle_is_a_clear_error(bundles, index_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundles["logreg"], other)
    meta = json.loads((other / "text_model.json").read_text())
    (other / "text_model.json").write_text(json.dumps(meta, indent=1))  # another text model file
    rehash(other)
    with pytest.raises(InputError, match="built with another text model"):
        open_finder(index_dir, other)
    result = cli("--index", index_dir, "--model", other, "--query", "Why is the sky blue?")
    assert result.returncode == 2 and len(our_lines(result.stderr)) == 1
    assert "built with another text model" in result.stderr


def test_damaged_or_missing_index_and_bad_input_are_one_line(index_dir, tmp_path):
    (tmp_path / "q.csv").write_text("text\nWhy?\n")
    result = cli(
        "--index", index_dir, "--input", tmp_path / "q.csv", "--output", tmp_path / "o.csv"
    )
    assert result.returncode == 2 and "q.csv: missing column(s) question" in result.stderr
    assert not (tmp_path / "o.csv").exists()
    (index_dir / "bank.parquet").write_bytes(b"PAR1 damaged")
    result = cli("--index", index_dir, "--query", "Why is the sky blue?")
    assert result.returncode == 2 and "index corrupted: bank.parquet" in result.stderr
    result = cli("--index", tmp_path / "nothing", "--query", "x")
    assert result.returncode == 2 and "not a question index" in result.stderr


def test_retrieval_metrics_on_known_duplicates(featurized, bundles):
    processed = featurized["paths"]["processed"]
    splits = {s: pd.read_parquet(f"{processed}/{s}.parquet") for s in ("train", "val", "test")}
    bundle = load_bundle(bundles["logreg"])
    approximate = evaluate_retrieval(bundle, INDEX_SETTINGS, splits)
    exact = evaluate_retrieval(bundle, {**INDEX_SETTINGS, "kind": "flat"}, splits)
    by_words = evaluate_retrieval(bundle, {**INDEX_SETTINGS, "vectors": "embedding"}, splits)
    assert by_words["queries"] == approximate["queries"]
    assert approximate["queries"] > 10
    for part in ("candidates", "exact", "reranked"):
        recalls = [approximate[part][f"recall@{k}"] for k in (1, 5, 10)]
        assert 0 <= recalls[0] <= recalls[1] <= recalls[2] <= 1
    recalls = {k: v for k, v in exact["candidates"].items() if k != "mrr"}
    assert recalls == exact["exact"]  # flat search is the exact search
    # re-ranking only reorders the candidates: the recall over all of them is unchanged
    every = f"recall@{INDEX_SETTINGS['candidates']}"
    assert approximate["reranked"][every] == approximate["candidates"][every]
    reranked = approximate["reranked"]
    assert reranked["recall@1"] <= reranked["mrr"] <= reranked[every]
    assert approximate["blend"] in BLENDS
    fixed = evaluate_retrieval(bundle, INDEX_SETTINGS, splits, blend=0.0)  # the model alone
    assert fixed["blend"] == 0.0 and fixed["reranked"] == fixed["model_only"]


def frames_equal_as_text(written: pd.DataFrame, computed: pd.DataFrame) -> None:
    """A file read back holds exactly the computed frame: the same columns and, cell by cell,
    the same value (numbers compared as numbers, missing as missing)."""
    assert list(written.columns) == list(computed.columns) and len(written) == len(computed)
    for name in computed.columns:
        got, want = written[name].astype(object), computed[name].astype(object)
        for a, b in zip(got, want, strict=True):
            if pd.isna(b) or b == "":
                assert pd.isna(a) or a == "", (name, a, b)
            elif isinstance(b, bool | np.bool_):
                assert str(a).lower() == str(b).lower(), (name, a, b)
            elif isinstance(b, int | float | np.number):  # JSON reads 1 as 1.0 beside a null
                assert float(a) == pytest.approx(float(b), rel=1e-6), (name, a, b)
            else:
                assert str(a) == str(b), (name, a, b)


@pytest.mark.parametrize("ext", ["csv", "tsv", "parquet", "jsonl"])
def test_output_files_hold_exactly_the_matches_after_adds(index_dir, tmp_path, ext):
    """The bank in several pieces (built, then two adds): every format holds what find
    computed, byte-clean (a CSV once held raw memory here)."""
    for part in (["How do I train a puppy?", "What is a black hole?"], ['Is "C, or C++" hard?']):
        more = tmp_path / "more.csv"
        pd.DataFrame({"question": part}).to_csv(more, index=False)
        assert cli("--index", index_dir, "--add", more).returncode == 0
    queries = ["how do i train a puppy?", "Why is the sky blue?", 'is "c, or c++" hard?']
    pd.DataFrame({"question": queries}).to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / f"m.{ext}"
    result = cli("--index", index_dir, "--input", tmp_path / "q.csv", "--output", out)
    assert result.returncode == 0, result.stderr
    if ext != "parquet":
        assert b"\0" not in out.read_bytes()
    computed = open_finder(index_dir).find(open_table(tmp_path / "q.csv").read()["question"], 10)
    frames_equal_as_text(open_table(out).read(), computed)


def test_the_clis_default_to_the_projects_own_index_and_bundles(bundles, index_dir, tmp_path):
    """Run inside a project (a params.yaml in the working directory), `dupq-find` uses its
    index and `index.top_k`, and `dupq-score --model NAME` its bundle of that name."""
    import subprocess
    import sys

    import yaml

    project = tmp_path / "project"
    project.mkdir()
    paths = {"index": str(index_dir), "models": str(bundles["logreg"].parent)}
    (project / "params.yaml").write_text(yaml.safe_dump({"paths": paths, "index": {"top_k": 2}}))

    def run(module, *args, cwd=project):
        command = [sys.executable, "-m", module, *map(str, args)]
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)

    found = run("pipeline.find", "--query", "Why is the sky blue?")
    assert found.returncode == 0, found.stderr
    rows = [line for line in found.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 2 and "Why is the sky blue?" in rows[0]
    pairs = pd.DataFrame({"question1": ["Why is the sky blue?"], "question2": ["Why blue sky?"]})
    pairs.to_csv(project / "pairs.csv", index=False)
    scored = run("pipeline.score", "--model", "logreg", "--input", "pairs.csv", "--output", "o.csv")
    assert scored.returncode == 0, scored.stderr
    expected = load_bundle(bundles["logreg"]).predict_proba(pairs["question1"], pairs["question2"])
    got = pd.read_csv(project / "o.csv")["probability"].to_numpy()
    assert np.allclose(got, expected, atol=1e-6)
    elsewhere = run(
        "pipeline.score",
        "--model",
        "logreg",
        "--input",
        project / "pairs.csv",
        "--output",
        tmp_path / "o.csv",
        cwd=tmp_path,
    )  # no project: models/logreg
    assert elsewhere.returncode == 2 and "models/logreg" in elsewhere.stderr


@needs_shared
def test_the_index_finds_real_paraphrases_far_more_often_than_random_vectors():
    """Real Quora duplicates (paraphrases: no query is its target up to case or spacing),
    looked up among ~12,000 real questions, 10 candidates each: the projected TF-IDF vectors
    find the known duplicate far more often than an index of random vectors does."""
    from gensim.models import KeyedVectors

    from pipeline.find.index import QuestionEncoder, new_faiss_index
    from pipeline.text import TextConfig, canonical, normalize
    from pipeline.text_model import TextModel

    pairs = pd.read_csv(SHARED_TSV, sep="\t", nrows=6000, dtype=str, keep_default_na=False)
    q1 = normalize(pairs["question1"], "NFKC")
    q2 = normalize(pairs["question2"], "NFKC")
    paraphrase = (pairs["is_duplicate"] == "1") & (
        np.asarray(canonical(q1)) != np.asarray(canonical(q2))
    )
    queries, targets = q1[paraphrase].drop_duplicates(), q2[paraphrase]
    targets = targets[queries.index]
    every = pd.concat([q1, q2]).drop_duplicates()
    bank = every[~every.isin(set(queries))].reset_index(drop=True)
    findable = targets.isin(set(bank))  # not when the target is itself a query
    queries, targets = queries[findable], targets[findable]
    assert len(queries) > 1000 and len(bank) > 8000
    model = TextModel.fit(bank, TextConfig(), KeyedVectors(8), max_len=32)
    encoder = QuestionEncoder.for_settings(model, {**INDEX_SETTINGS, "tfidf_dim": 256})
    target_rows = pd.Index(bank).get_indexer(targets)

    def recall_at_10(bank_vectors, query_vectors) -> float:
        index = new_faiss_index(bank_vectors.shape[1], INDEX_SETTINGS)
        index.add(bank_vectors)
        _, rows = index.search(query_vectors, 10)
        return float((rows == target_rows[:, None]).any(axis=1).mean())

    found = recall_at_10(encoder.vectors(bank), encoder.vectors(queries))
    rng = np.random.default_rng(0)
    random = rng.normal(size=(len(bank) + len(queries), 256)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    by_chance = recall_at_10(random[: len(bank)], random[len(bank) :])
    assert found >= 0.8 and found >= by_chance + 0.7, (found, by_chance)
