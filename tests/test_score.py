import json

import numpy as np
import pandas as pd
import pytest
from conftest import rehash, run_cli

from pipeline import score, tables
from pipeline.bundle import Pairs
from pipeline.errors import InputError
from pipeline.score import load_bundle, score_file
from pipeline.stages import evaluate

PAIRS = pd.DataFrame(
    {
        "id": [10, 11, 12, 13, 14],
        "question1": [
            "How do I learn Python?",
            "What is the best way to learn Rust?",
            "How do I learn Python?",
            "Where to live in Japan? 日本 😀",
            "Why is my laptop slow?",
        ],
        "question2": [
            "What is the best way to learn Python?",
            "How do I teach Rust?",
            "How do I teach Python?",
            "Which cities in Japan are best to settle in?",
            "How can I make my laptop faster?",
        ],
        "note": ["a", "b", "c", "d", "e"],
    }
)


def read_any(path):
    fmt = path.suffix
    if fmt == ".parquet":
        return pd.read_parquet(path)
    if fmt == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, sep="\t" if fmt == ".tsv" else ",", dtype=str, keep_default_na=False)


def write_any(frame, path):
    fmt = path.suffix
    if fmt == ".parquet":
        frame.to_parquet(path, index=False)
    elif fmt == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, sep="\t" if fmt == ".tsv" else ",", index=False)


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_round_trip_in_every_format(bundles, tmp_path, ext):
    source = tmp_path / f"in{ext}"
    write_any(PAIRS, source)
    counts = score_file(bundles["logreg"], source, tmp_path / f"out{ext}", quiet=True, chunk_rows=2)
    out = read_any(tmp_path / f"out{ext}")
    assert counts == {**counts, "rows": 5, "scored": 5, "errors": 0}
    assert list(out.columns) == [
        "id",
        "question1",
        "question2",
        "note",
        "probability",
        "prediction",
        "error",
    ]
    assert out["note"].tolist() == list("abcde")  # order and original columns kept
    expected = load_bundle(bundles["logreg"]).predict_proba(PAIRS.question1, PAIRS.question2)
    assert np.allclose(out["probability"].astype(float), expected, atol=1e-6)


def test_bad_rows_get_an_error_and_keep_their_place(bundles, tmp_path):
    rows = pd.DataFrame(
        {
            "question1": ["How do I learn Python?", None, "   ", 42, "?!", "x" * 100_000]
            + [["a", "list"], {"an": "object"}],
            "question2": [
                "How can I learn Python?",
                "Is Rust hard?",
                "Is Rust hard?",
                "Is Rust hard?",
                "Is Rust hard?",
                "How do I learn Python?",
                "Is Rust hard?",
                "Is Rust hard?",
            ],
        }
    )
    rows["question1"] = rows["question1"].astype(object)
    source = tmp_path / "in.jsonl"
    write_any(rows, source)
    # chunks of 2 rows: the second chunk has no row to score
    counts = score_file(
        bundles["residual"], source, tmp_path / "out.jsonl", quiet=True, chunk_rows=2
    )
    out = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert len(out) == 8 and counts["errors"] == 5
    assert out["error"].tolist() == [
        "",
        "question1 is missing",
        "question1 is empty",
        "question1 is not text",
        "",
        "",
        "question1 is not text",
        "question1 is not text",
    ]
    assert out["probability"].isna().tolist() == [False, True, True, True, False, False] + [
        True,
        True,
    ]


def test_csv_with_crlf_quoted_newlines_and_bom(bundles, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(
        '\ufeffquestion1,question2\r\n"How do I\r\nlearn Python?",What is Python?\r\n'
        "Why?,Why not?\r\n".encode()
    )
    score_file(bundles["logreg"], source, tmp_path / "out.csv", quiet=True)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert len(out) == 2 and out.loc[0, "question1"] == "How do I\r\nlearn Python?"


def test_header_only_input_gives_header_only_output(bundles, tmp_path):
    (tmp_path / "in.csv").write_text("question1,question2,x\n")
    counts = score_file(bundles["logreg"], tmp_path / "in.csv", tmp_path / "out.csv", quiet=True)
    assert counts["rows"] == 0
    assert (
        tmp_path / "out.csv"
    ).read_text() == "question1,question2,x,probability,prediction,error\n"


def cli(*args):
    return run_cli("pipeline.score", *args)


def test_whole_file_problems_exit_2_with_one_line(bundles, tmp_path):
    model = bundles["logreg"]
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "cols.csv").write_text("q1,q2\na,b\n")
    (tmp_path / "bad.tsv").write_bytes(b"question1\tquestion2\nok?\tfine?\nbad \xff\tx\n")
    (tmp_path / "badhead.csv").write_bytes(b"question1,qu\xffestion2\nok?,fine?\n")
    (tmp_path / "in.csv").write_text("question1,question2\nHow?,Why?\n")
    (tmp_path / "ragged.csv").write_text('question1,question2\n"How\nnow?",Why?\nA?,B?,C?\n')
    (tmp_path / "twice.csv").write_text("question1,question2,id,id\nHow?,Why?,1,2\n")
    (tmp_path / "quote.csv").write_text('question1,"question2\n' + "x" * 200_000 + "\n")
    (tmp_path / "nobundle").mkdir()
    cases = [
        (tmp_path / "missing.csv", model, "missing.csv: file not found"),
        (tmp_path / "in.xlsx", model, "unknown file extension '.xlsx'"),
        (tmp_path / "cols.csv", model, "missing column(s) question1, question2; found q1, q2"),
        (tmp_path / "bad.tsv", model, "bad.tsv: line 3: not valid UTF-8"),
        (tmp_path / "badhead.csv", model, "badhead.csv: line 1: not valid UTF-8"),
        (tmp_path / "empty.csv", model, "empty.csv: empty file"),
        (tmp_path / "ragged.csv", model, "ragged.csv: line 4: 3 fields where the header has 2"),
        (tmp_path / "twice.csv", model, "twice.csv: header: column name(s) repeated: id"),
        (tmp_path / "quote.csv", model, "quote.csv: cannot parse the header"),
        (tmp_path / "in.csv", tmp_path / "nobundle", "bundle.json is missing"),
    ]
    (tmp_path / "in.xlsx").write_text("x")
    for source, bundle, message in cases:
        result = cli("--model", bundle, "--input", source, "--output", tmp_path / "out.csv")
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    args = ("--model", model, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv")
    result = cli(*args, "--batch-size", "0")
    assert (
        result.returncode == 2 and "--chunk-rows/--batch-size: must be 1 or more" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "step, error",
    [("finish_chunk", KeyboardInterrupt), ("prepare_chunk", RuntimeError)],
    ids=["model-thread", "prepare-thread"],
)
def test_failure_mid_file_leaves_no_partial_output_and_keeps_existing(
    bundles, tmp_path, monkeypatch, step, error
):
    source = tmp_path / "in.csv"
    write_any(pd.concat([PAIRS] * 4, ignore_index=True), source)
    output = tmp_path / "out.csv"
    output.write_text("previous results\n")
    real = getattr(score, step)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise error("stop")
        return real(*args, **kwargs)

    monkeypatch.setattr(score, step, failing)
    with pytest.raises(error):
        score_file(bundles["logreg"], source, output, chunk_rows=5, quiet=True)
    assert output.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


@pytest.mark.parametrize("name", ["residual", "esim"])
def test_same_pair_same_probability_through_evaluate_cli_and_api(
    featurized, bundles, tmp_path, name
):
    test = pd.read_parquet(f"{featurized['paths']['processed']}/test.parquet")
    evaluate.run(featurized, name)
    bundle = load_bundle(bundles[name])
    api = bundle.predict_proba(test["question1"], test["question2"])
    _, via_evaluate = bundle.score(test["question1"], test["question2"])
    source = tmp_path / "test.parquet"
    test.to_parquet(source)
    result = cli(
        "--model",
        bundles[name],
        "--input",
        source,
        "--output",
        tmp_path / "o.parquet",
        "--chunk-rows",
        7,
    )
    assert result.returncode == 0, result.stderr
    via_cli = pd.read_parquet(tmp_path / "o.parquet")["probability"].to_numpy()
    assert np.allclose(via_cli, api, rtol=0, atol=1e-6)
    assert np.allclose(via_evaluate, api, rtol=0, atol=1e-6)
    metrics = json.loads(open(f"{featurized['paths']['metrics']}/{name}.json").read())
    predicted = (via_cli >= metrics["threshold"]).astype(int)
    assert (predicted == test["is_duplicate"]).mean() == pytest.approx(metrics["accuracy"])


def test_threshold_override_and_summary(bundles, tmp_path):
    write_any(PAIRS, tmp_path / "in.csv")
    result = cli(
        "--model",
        bundles["logreg"],
        "--input",
        tmp_path / "in.csv",
        "--output",
        tmp_path / "out.tsv",
        "--threshold",
        "0",
    )
    assert result.returncode == 0
    assert "5 rows" in result.stderr and "5 scored, 0 with errors" in result.stderr
    out = pd.read_csv(tmp_path / "out.tsv", sep="\t")
    assert (out["prediction"] == 1).all()


def test_broken_keras_model_is_exit_2_after_loading_on_the_side(bundles, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundles["residual"], broken)
    (broken / "model.keras").write_bytes(b"not a zip archive")
    rehash(broken)  # past the sha256 check, so that Keras itself meets the damage
    write_any(PAIRS, tmp_path / "in.csv")
    result = cli("--model", broken, "--input", tmp_path / "in.csv", "--output", tmp_path / "o.csv")
    assert result.returncode == 2 and "cannot load bundle" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("long_row", [False, True], ids=["short-rows", "140k-char-row"])
def test_csv_rows_keep_their_order_across_reader_blocks_and_chunks(
    bundles, tmp_path, monkeypatch, long_row
):
    monkeypatch.setattr(tables, "CSV_BLOCK", 64)  # grown to hold the longest line
    blocks = []
    open_csv = tables.pa_csv.open_csv
    monkeypatch.setattr(
        tables.pa_csv,
        "open_csv",
        lambda *a, **k: blocks.append(k["read_options"].block_size) or open_csv(*a, **k),
    )
    frame = pd.concat([PAIRS] * 20, ignore_index=True).assign(id=range(100))
    if long_row:
        frame.loc[7, "question2"] = "Why " + "really " * 20_000 + "?"
    write_any(frame, tmp_path / "in.csv")
    counts = score_file(
        bundles["logreg"], tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=3, quiet=True
    )
    out = read_any(tmp_path / "out.csv")
    assert counts["rows"] == 100 and out["id"].tolist() == [str(i) for i in range(100)]
    assert out["note"].tolist() == frame["note"].tolist()
    assert out["question2"].tolist() == frame["question2"].tolist()
    if not long_row:  # the file really was read in several blocks
        assert blocks[0] * 5 < (tmp_path / "in.csv").stat().st_size


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1 << 24])
def test_utf8_check_finds_the_line_whatever_the_block_size(tmp_path, monkeypatch, block):
    monkeypatch.setattr(tables, "BLOCK", block)
    good = tmp_path / "good.csv"
    good.write_text("question1,question2\n日本 😀,é?\nok,fine\n", encoding="utf-8")
    longest = max(map(len, good.read_bytes().splitlines(keepends=True)))
    assert tables.check_utf8(good) == longest  # characters cut by block ends are fine
    bad = tmp_path / "bad.csv"
    bad.write_bytes("question1,question2\n日本,é\n".encode() + b"cut \xe6\x97\n")
    with pytest.raises(InputError, match="bad.csv: line 3: not valid UTF-8"):
        tables.check_utf8(bad)


def test_pairs_from_text_columns_and_from_python_objects_agree():
    q1 = ["How do I learn Python?", None, "  ", "How do I learn Python?", "Ｐｙｔｈｏｎ?"]
    q2 = ["What is Python?", "Why?", "Why?", "", "What is Python?"]
    as_text = Pairs.from_columns(pd.Series(q1, dtype="str"), pd.Series(q2, dtype="str"))
    as_objects = Pairs.from_columns(pd.Series(q1, dtype=object), pd.Series(q2, dtype=object))
    for pairs in (as_text, as_objects):
        assert pairs.errors.tolist() == [
            "",
            "question1 is missing",
            "question1 is empty",
            "question2 is empty",
            "",
        ]
        q = pairs.questions.to_numpy()
        assert q[pairs.first[[0, 3]]].tolist() == ["How do I learn Python?"] * 2
        assert q[pairs.first[4]] == "Python?"  # NFKC
        assert pairs.first[0] == pairs.first[3]  # encoded once


def test_chunks_end_at_the_row_or_the_distinct_question_bound():
    def frame(start, distinct):
        texts = pd.Series([f"q{start + i % distinct}" for i in range(4)], dtype="str")
        return pd.DataFrame({"question1": texts, "question2": texts, "n": range(start, start + 4)})

    def sizes(frames, **bounds):
        chunks = score.question_bounded_chunks(iter(frames), "question1", "question2", **bounds)
        chunks = list(chunks)
        joined = pd.concat(chunks, ignore_index=True)
        assert joined["n"].tolist() == pd.concat(frames)["n"].tolist()  # all rows, in order
        return [len(chunk) for chunk in chunks]

    all_new = [frame(4 * i, 4) for i in range(5)]
    repeats = [frame(4 * i, 1) for i in range(5)]
    assert sizes(all_new, max_rows=100, max_questions=8) == [8, 8, 4]  # 4 questions a frame
    assert sizes(repeats, max_rows=100, max_questions=8) == [20]  # 1 question a frame
    assert sizes(repeats, max_rows=12, max_questions=8) == [12, 8]
    objects = [f.astype(object) for f in repeats]  # JSON lines: every cell counts
    assert sizes(objects, max_rows=100, max_questions=16) == [8, 8, 4]


def test_models_with_big_question_rows_get_fewer_questions_per_chunk(bundles):
    from pipeline.score import CHUNK_ENCODING_BYTES, questions_per_chunk

    esim, logreg = load_bundle(bundles["esim"]), load_bundle(bundles["logreg"])
    assert questions_per_chunk(logreg, 400_000) == 400_000  # sparse rows: no bound
    floats = esim.encoding_floats
    assert questions_per_chunk(esim, 10**9) == CHUNK_ENCODING_BYTES // (4 * floats)
    assert questions_per_chunk(esim, 5) == 5


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_output_holds_exactly_the_input_columns_and_the_scores(bundles, tmp_path, ext):
    """Pass-through columns of every kind (text with quotes, tabs and newlines, numbers,
    missing cells), read in several chunks: the output holds them and the computed scores."""
    rows = PAIRS.assign(
        note=["a", 'say "hi", then\ttab', None, "line\nbreak", "日本"],
        weight=[0.5, None, 2.0, 3.25, -1.0],
    )
    source = tmp_path / "in.parquet"
    rows.to_parquet(source, index=False, row_group_size=2)
    score_file(bundles["logreg"], source, tmp_path / f"out{ext}", quiet=True, chunk_rows=2)
    out = tables.open_table(tmp_path / f"out{ext}").read()
    bundle = load_bundle(bundles["logreg"])
    expected = bundle.predict_proba(PAIRS.question1, PAIRS.question2)
    assert list(out.columns) == [*rows.columns, "probability", "prediction", "error"]
    for name in ("id", "question1", "question2", "note"):
        assert [None if pd.isna(v) else str(v) for v in out[name]] == [
            None if pd.isna(v) else str(v) for v in rows[name]
        ], name
    assert np.allclose(out["weight"].astype(float), rows["weight"], equal_nan=True)
    assert np.allclose(out["probability"].astype(float), expected, atol=1e-6)
    predicted = [str(v).lower() in ("1", "true") for v in out["prediction"]]
    assert predicted == (expected >= bundle.threshold).tolist()
    assert out["error"].fillna("").eq("").all()
