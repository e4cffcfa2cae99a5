"""Writers that never lose what they were given: concurrent adds to one question index, and
directory swaps (an index, a model bundle) that a kill at any instant leaves whole."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from pipeline.bundle import load_bundle
from pipeline.errors import InputError
from pipeline.find.index import QuestionIndex
from pipeline.find.search import open_finder
from pipeline.io import FAULT_ENV, atomic_directory, exclusive_lock, recover_directory

SETTINGS = {
    "vectors": "tfidf",
    "tfidf_dim": 32,
    "seed": 0,
    "kind": "flat",
    "hnsw_m": 16,
    "ef_construction": 40,
    "ef_search": 40,
    "candidates": 10,
    "lexical_share": 0.5,
    "lexical_max_df": 0.03,
}
STEPS = ("staged", "moved_old_aside", "moved_new_in")  # atomic_directory's fault points


def find_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.find", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def small_index(bundles, tmp_path):
    bundle = load_bundle(bundles["logreg"])
    questions = ["Why is the sky blue?", "How do I cook rice?", "What is a black hole?"]
    QuestionIndex.build(questions, None, bundle, SETTINGS).save(tmp_path / "index")
    return tmp_path / "index"


def questions_file(path, run: int, n: int):
    texts = [f"Run {run} asks question number {i} about topic {run * 100 + i}?" for i in range(n)]
    pd.DataFrame({"question": texts}).to_csv(path, index=False)
    return texts


def leftovers(directory):
    """Staging directories and backups that a write left beside `directory`."""
    return sorted(p.name for p in directory.parent.glob(f".{directory.name}.*") if p.is_dir())


def test_concurrent_adds_keep_every_question_of_every_run(small_index, tmp_path):
    runs = 4
    texts = {run: questions_file(tmp_path / f"add{run}.csv", run, 25) for run in range(runs)}
    with ThreadPoolExecutor(runs) as pool:  # each thread waits on its own process
        results = list(
            pool.map(
                lambda run: find_cli("--index", small_index, "--add", tmp_path / f"add{run}.csv"),
                range(runs),
            )
        )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "added 25 of 25 questions" in result.stderr
    finder = open_finder(small_index, candidates=200)  # every question a candidate
    bank = set(finder.index.bank["question"])
    assert len(finder.index.bank) == 3 + runs * 25
    wanted = [text for run in texts.values() for text in run]
    assert set(wanted) <= bank
    first = finder.find(wanted, top_k=1)
    assert first["bank_question"].tolist() == wanted  # every one findable, as itself


def test_a_held_lock_makes_a_writer_wait_then_fail_clearly(tmp_path):
    target = tmp_path / "index"
    with exclusive_lock(target, timeout=5):
        with pytest.raises(InputError, match=r"index: another process has held its lock .* 0.2 s"):
            with exclusive_lock(target, timeout=0.2):
                pass
    with exclusive_lock(target, timeout=0.2):  # free again
        pass


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_during_an_index_swap_leaves_the_old_or_the_new_index(small_index, tmp_path, step):
    questions_file(tmp_path / "add.csv", 0, 5)
    result = find_cli("--index", small_index, "--add", tmp_path / "add.csv", env={FAULT_ENV: step})
    assert result.returncode == -signal.SIGKILL, result.stderr
    index = open_finder(small_index).index  # loads whole: every file's sha256 checked
    expected = 3 if step in ("staged", "moved_old_aside") else 8
    assert len(index.bank) == index.index.ntotal == expected
    assert leftovers(small_index) == []  # the loader restored or removed what the kill left
    result = find_cli("--index", small_index, "--add", tmp_path / "add.csv")
    assert result.returncode == 0 and len(open_finder(small_index).index.bank) == expected + 5


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_while_train_swaps_in_a_bundle_leaves_a_whole_bundle(featurized, tmp_path, step):
    from pipeline.stages import train

    params = {**featurized, "paths": {**featurized["paths"], "models": str(tmp_path)}}
    train.run(params, "logreg")
    old_c = load_bundle(tmp_path / "logreg").meta["params"]["C"]
    params["logreg"] = {**params["logreg"], "C": old_c / 8}  # a different model
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.train", "--params", path, "--model", "logreg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, FAULT_ENV: step},
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    bundle = load_bundle(tmp_path / "logreg")  # whole: its files' sha256 checked
    assert bundle.meta["params"]["C"] == (old_c / 8 if step == "moved_new_in" else old_c)
    assert leftovers(tmp_path / "logreg") == []


def test_a_failed_write_keeps_the_old_directory_and_leaves_nothing(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "f").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "f").write_text("new")
        raise RuntimeError("failed mid-write")
    assert (target / "f").read_text() == "old" and leftovers(target) == []


def test_recovery_never_touches_a_live_writers_backup(tmp_path):
    """A backup whose process is alive belongs to a swap in progress: left alone."""
    import socket

    target = tmp_path / "d"
    live = tmp_path / f".d.{socket.gethostname()}.{os.getpid()}.1.old"
    live.mkdir()
    recover_directory(target)
    assert live.exists() and not target.exists()


# -- one rule for values that are not text, and the last input gaps ---------------------------
NOT_TEXT = [12345, {"a": 1}, ["a", "list"], True, 3.5]


def test_add_skips_questions_that_are_not_text_and_says_so(small_index, tmp_path):
    source = tmp_path / "add.jsonl"
    rows = [{"question": value} for value in [*NOT_TEXT, "How do I train a puppy?", ""]]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = find_cli("--index", small_index, "--add", source)
    assert result.returncode == 0, result.stderr
    assert "added 1 of 7 questions; 4 in" in result.stderr
    assert "(skipped: 5 not text, 1 empty or missing)" in result.stderr
    bank = open_finder(small_index).index.bank["question"].tolist()
    assert bank[-1] == "How do I train a puppy?" and "12345" not in bank


def test_prepare_drops_questions_that_are_not_text_by_their_own_reason(params, tmp_path):
    from pipeline.stages import prepare, raw

    good = [
        {"question1": f"How do I learn topic {i} well?", "question2": f"Best way to learn {i}?"}
        for i in range(40)
    ]
    rows = [{**row, "is_duplicate": i % 2} for i, row in enumerate(good)]
    rows += [
        {"question1": value, "question2": "A real question here?", "is_duplicate": 0}
        for value in NOT_TEXT
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    params["data"]["source"] = str(source)
    raw.run(params)
    report = prepare.run(params)
    assert report["dropped"]["question_not_text"] == len(NOT_TEXT)
    assert report["rows_kept"] == 40


def test_a_jsonl_file_whose_first_line_is_not_an_object_names_the_line(tmp_path):
    from pipeline.tables import open_table

    (tmp_path / "q.jsonl").write_text('\n[1, 2, 3]\n{"question1": "a"}\n')
    with pytest.raises(InputError, match=r"q.jsonl: line 2: not a JSON object: '\[1, 2, 3\]'"):
        open_table(tmp_path / "q.jsonl")


def test_an_index_json_without_a_field_is_a_clear_error(small_index):
    meta_path = small_index / "index.json"
    meta = json.loads(meta_path.read_text())
    del meta["settings"]["vectors"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="index.json: field 'settings' lacks vectors"):
        open_finder(small_index)
    meta["settings"] = "flat"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="field 'settings' missing or not a dict"):
        open_finder(small_index)


def test_dupq_find_works_from_outside_the_project(small_index, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.find",
            "--index",
            small_index.resolve(),
            "--query",
            "Why is the sky blue?",
            "--top-k",
            "1",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "Why is the sky blue?" in result.stdout


def train_cli(params: dict, tmp_path, model: str) -> subprocess.CompletedProcess:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, "-m", "pipeline.stages.train", "--params", path, "--model", model],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_checks_the_ensemble_members_before_any_model_trains(params, tmp_path):
    params["train"]["models"] = ["logreg", "gbdt"]
    params["ensemble"]["members"] = ["logreg", "esim"]
    result = train_cli(params, tmp_path, "logreg")
    assert result.returncode == 2
    assert "ensemble.members: ['esim'] not in train.models" in result.stderr
    assert not (tmp_path / "models" / "logreg").exists()


def test_train_before_features_says_which_stage_to_run(params, tmp_path):
    result = train_cli(params, tmp_path, "logreg")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no features yet; run the features stage first (dvc repro features)" in result.stderr
