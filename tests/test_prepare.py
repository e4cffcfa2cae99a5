import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_TSV, needs_shared

from pipeline import raw_data, synthetic
from pipeline.io import InputError
from pipeline.raw_data import read_pairs
from pipeline.stages import prepare, raw
from pipeline.text import TextConfig

DATA = {
    "min_chars": 10,
    "invalid_labels": "error",
    "drop_duplicate_pairs": True,
    "unicode_form": "NFKC",
}


def frame(rows):
    return pd.DataFrame(rows, columns=["question1", "question2", "is_duplicate"])


def test_missing_and_short_questions_are_dropped_and_counted():
    raw = frame(
        [
            ["What is a good question?", None, "1"],
            ["", "What is a good question?", "0"],
            ["Short?", "What is a good question?", "0"],
            ["What is a good question?", "Is this a good question?", "1"],
        ]
    )
    cleaned, dropped = prepare.clean(raw, DATA, TextConfig(), "x.tsv")
    assert len(cleaned) == 1
    assert dropped["missing_question"] == 2
    assert dropped["shorter_than_min_chars"] == 1


def test_whitespace_only_question_counts_as_missing():
    raw = frame([[" \t\n ", "What is a good question?", "1"]])
    _, dropped = prepare.clean(raw, DATA, TextConfig(), "x.tsv")
    assert dropped["missing_question"] == 1


def test_duplicate_pairs_in_either_order_are_dropped():
    raw = frame(
        [
            ["How do I learn Python?", "What is the best way to learn Python?", "1"],
            ["What is the best way to learn Python?", "How do I learn Python?", "1"],
            ["How do I learn Python?", "What  is the best way to learn Python?", "1"],
        ]
    )
    cleaned, dropped = prepare.clean(raw, DATA, TextConfig(), "x.tsv")
    assert len(cleaned) == 1 and dropped["duplicate_pair"] == 2


def test_invalid_label_is_an_error_naming_rows_or_dropped_by_param():
    raw = frame(
        [
            ["How do I learn Python?", "How can I learn Python fast?", "1"],
            ["How do I learn Python?", "How do I learn Rust today?", "yes"],
        ]
    )
    with pytest.raises(InputError, match=r"x\.tsv.*row 2 \('yes'\)"):
        prepare.clean(raw, DATA, TextConfig(), "x.tsv")
    cleaned, dropped = prepare.clean(raw, {**DATA, "invalid_labels": "drop"}, TextConfig(), "x.tsv")
    assert len(cleaned) == 1 and dropped["invalid_label"] == 1


def test_unicode_is_normalized():
    raw = frame([["What is ﬁnance\u00a0really?", "What is finance  really?", "1"]])
    cleaned, _ = prepare.clean(raw, {**DATA, "drop_duplicate_pairs": False}, TextConfig(), "x.tsv")
    assert cleaned.loc[0, "question1"] == cleaned.loc[0, "question2"] == "What is finance really?"


def write(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_reads_tsv_with_quoted_newlines_crlf_and_bom(tmp_path):
    content = (
        "\ufeffid\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\r\n"
        '1\t1\t2\t"How do I\nlearn Python?"\tWhat is the way to learn Python?\t1\r\n'
        "2\t3\t4\tIs NA a real question?\tnull\t0\r\n"
    ).encode()
    pairs = read_pairs(write(tmp_path, "q.tsv", content))
    assert list(pairs.columns[:1]) == ["id"]
    assert pairs.loc[0, "question1"] == "How do I\nlearn Python?"
    assert (
        pairs.loc[1, "question1"] == "Is NA a real question?"
        and pairs.loc[1, "question2"] == "null"
    )


def test_reads_kaggle_csv(tmp_path):
    content = (
        b'"id","qid1","qid2","question1","question2","is_duplicate"\n'
        b'"0","1","2","What is the step by step guide to invest in share market?",'
        b'"What is the step by step guide to invest in share market in india?","0"\n'
        b'"1","3","4","How can I increase the speed of my internet connection, '
        b'really?","",0\n'
    )
    pairs = read_pairs(write(tmp_path, "train.csv", content))
    assert len(pairs) == 2 and pairs.loc[1, "question2"] == ""  # a quoted "" is empty text


def test_invalid_utf8_names_the_line_or_is_replaced_by_param(tmp_path):
    content = (
        b"question1\tquestion2\tis_duplicate\n"
        b"How do I learn Python?\tWhat is Python?\t1\n"
        b"Bad \xff byte here?\tWhat is Python?\t0\n"
    )
    path = write(tmp_path, "bad.tsv", content)
    with pytest.raises(InputError, match=r"bad\.tsv: line 3: not valid UTF-8 .*byte 0xff"):
        read_pairs(path)
    data = {"source": str(path), "encoding_errors": "strict"}
    with pytest.raises(InputError, match=r"bad\.tsv: line 3: .*set data.encoding_errors"):
        raw_data.fetch(data, {}, tmp_path / "raw")
    manifest = raw_data.fetch({**data, "encoding_errors": "replace"}, {}, tmp_path / "raw")
    assert manifest["lines_with_invalid_utf8_replaced"] == 1
    pairs = read_pairs(tmp_path / "raw" / "bad.tsv")
    assert pairs.loc[1, "question1"] == "Bad \ufffd byte here?"


def test_missing_columns_and_unknown_extension_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing column\(s\) is_duplicate; found q1"):
        read_pairs(write(tmp_path, "a.csv", b"q1,question1,question2\nx,y,z\n"))
    with pytest.raises(InputError, match="unknown file extension '.xlsx'"):
        read_pairs(write(tmp_path, "a.xlsx", b"x"))
    with pytest.raises(InputError, match="file not found"):
        read_pairs(tmp_path / "none.tsv")


def test_prepare_cli_reports_bad_input_without_traceback(tmp_path, params, capsys):
    import yaml

    params["data"]["source"] = str(write(tmp_path, "x.tsv", b"question1\tquestion2\n"))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    raw.main(["--params", str(path)])  # the raw stage copies the file; prepare reads it
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--params", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"prepare: error: .*x\.tsv: missing column.*\n", err), err


def test_demo_is_deterministic_balanced_and_not_exact_match():
    a, b = synthetic.generate(3000, seed=1), synthetic.generate(3000, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic.generate(3000, seed=2))
    assert a["is_duplicate"].mean() == pytest.approx(0.37, abs=0.005)
    assert (a["question1"].str.lower() == a["question2"].str.lower()).sum() == 0
    assert a["question1"].nunique() > 1000


def jaccard(q1, q2):
    from pipeline.text import token_lists

    out = []
    for x, y in zip(token_lists(q1), token_lists(q2), strict=True):
        x, y = set(x), set(y)
        out.append(len(x & y) / len(x | y))
    return np.array(out)


def test_demo_word_overlap_alone_does_not_solve_it():
    data = synthetic.generate(4000, seed=3)
    overlap = jaccard(data["question1"], data["question2"])
    labels = data["is_duplicate"].to_numpy()
    best = max(((overlap >= t) == labels).mean() for t in np.linspace(0, 1, 101))
    assert best < 0.75  # majority class is 0.63
    assert overlap[labels == 0].mean() > overlap[labels == 1].mean() - 0.1


def test_random_split_is_stratified_and_deterministic():
    data = synthetic.generate(3000, seed=0)
    split = {"strategy": "random", "seed": 7, "train": 0.8, "val": 0.1, "test": 0.1}
    parts, _ = prepare.split_pairs(data, split, TextConfig())
    again, _ = prepare.split_pairs(data, split, TextConfig())
    assert sum(len(p) for p in parts.values()) == len(data)
    for name in parts:
        pd.testing.assert_frame_equal(parts[name], again[name])
        assert parts[name]["is_duplicate"].mean() == pytest.approx(0.37, abs=0.02)
    assert len(parts["train"]) == 2400


def test_question_disjoint_split_shares_no_question():
    data = synthetic.generate(3000, seed=0)
    split = {"strategy": "question_disjoint", "seed": 7, "train": 0.8, "val": 0.1, "test": 0.1}
    parts, info = prepare.split_pairs(data, split, TextConfig())
    texts = {
        name: set(pd.concat([p["question1"], p["question2"]]).str.casefold())
        for name, p in parts.items()
    }
    assert not texts["train"] & texts["val"]
    assert not texts["train"] & texts["test"]
    assert not texts["val"] & texts["test"]
    kept = sum(len(p) for p in parts.values())
    assert kept + info["pairs_dropped_for_disjointness"] == len(data)
    assert 0.7 < len(parts["train"]) / kept < 0.9


def test_question_disjoint_cuts_a_giant_component():
    hub = "What is the one question everybody links to?"
    rows = [[hub, f"Question number {i} about the hub topic?", i % 2] for i in range(130)]
    rows += [[f"Lone question {i} here?", f"Its lone partner {i} there?", i % 2] for i in range(30)]
    parts, info = prepare.split_pairs(
        frame(rows),
        {"strategy": "question_disjoint", "seed": 0, "train": 0.8, "val": 0.1, "test": 0.1},
        TextConfig(),
    )
    assert info["pairs_dropped_for_disjointness"] > 0
    assert sum(len(p) for p in parts.values()) + info["pairs_dropped_for_disjointness"] == 160


def test_run_writes_splits_and_report(params):
    raw.run(params)
    report = prepare.run(params)
    for split in ("train", "val", "test"):
        written = pd.read_parquet(f"{params['paths']['processed']}/{split}.parquet")
        assert len(written) == report[split]["pairs"] > 0
    saved = json.loads(open(params["paths"]["data_report"]).read())
    assert saved["rows_kept"] == report["rows_kept"]
    assert set(saved["dropped"]) == {
        "question_not_text",
        "missing_question",
        "shorter_than_min_chars",
        "invalid_label",
        "duplicate_pair",
    }
    assert (
        saved["train"]["pairs"] + saved["val"]["pairs"] + saved["test"]["pairs"]
        == saved["rows_kept"]
    )


@needs_shared
def test_real_quora_subset_is_a_valid_source(params):
    params["data"]["source"] = str(SHARED_TSV)
    manifest = raw.run(params)
    assert manifest["source"] == str(SHARED_TSV) and manifest["kind"] == "file"
    report = prepare.run(params)
    assert report["rows_read"] == 28984
    assert report["rows_kept"] > 28000
    assert 0.45 < report["train"]["positive_rate"] < 0.55


def test_pairs_differing_only_in_what_the_text_core_erases_are_one_pair():
    raw = frame(
        [
            ["How do I learn Python?", "What is the best way to learn Python?", 1],
            ["how do I learn python ?", "What is the BEST way to learn Python?", 1],
            ["What is the best way to learn python?", "How do i learn Python?", 1],
        ]
    )
    cleaned, dropped = prepare.clean(raw, DATA, TextConfig(), "x.tsv")
    assert len(cleaned) == 1 and dropped["duplicate_pair"] == 2
    # with case kept by the text core, case makes another question
    _, dropped = prepare.clean(raw, DATA, TextConfig(lowercase=False), "x.tsv")
    assert dropped["duplicate_pair"] == 0


def test_question_disjoint_treats_case_variants_as_one_question():
    rows = [[f"What is topic {i} about?", f"Tell me about topic {i}.", i % 2] for i in range(60)]
    rows += [[f"WHAT IS TOPIC {i} ABOUT?", f"Explain topic {i} to me.", i % 2] for i in range(60)]
    split = {"strategy": "question_disjoint", "seed": 1, "train": 0.6, "val": 0.2, "test": 0.2}
    parts, _ = prepare.split_pairs(frame(rows), split, TextConfig())
    keys = {
        name: set(pd.concat([p["question1"], p["question2"]]).str.lower())
        for name, p in parts.items()
    }
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["val"])


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"question1\tquestion2\tis_duplicate\n", "0 rows read, 0 kept"),
        (
            b"question1\tquestion2\tis_duplicate\nshort\tsmall\t1\nbrief\ttiny\t0\n",
            "2 rows read, 0 kept (dropped: 2 shorter_than_min_chars)",
        ),
        (
            b"question1\tquestion2\tis_duplicate\n"
            b"How do I learn Python fast?\tHow can I learn Python quickly?\t1\n"
            b"What is the capital of France?\tWhere is Paris located?\t0\n",
            "2 rows read, 2 kept",
        ),
    ],
)
def test_too_few_rows_to_split_is_one_line_and_the_report_is_written(
    tmp_path, params, content, expected
):
    import yaml

    params["data"]["source"] = str(write(tmp_path, "few.tsv", content))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    raw.main(["--params", str(path)])
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--params", str(path)])
    assert exit_info.value.code == 2
    with pytest.raises(InputError, match=f"few.tsv: {re.escape(expected)}.*too few to split"):
        prepare.run(params)
    report = json.loads(open(params["paths"]["data_report"]).read())
    assert report["rows_read"] == int(expected.split()[0])


def test_question_disjoint_on_tiny_data_fails_instead_of_an_empty_split(tmp_path, params):
    rows = b"".join(
        b"How do I learn topic %d quickly?\tWhat is the fastest way to learn topic %d?\t1\n"
        % (i, i)
        for i in range(3)
    )
    params["data"]["source"] = str(
        write(tmp_path, "three.tsv", b"question1\tquestion2\tis_duplicate\n" + rows)
    )
    params["split"]["strategy"] = "question_disjoint"
    raw.run(params)
    with pytest.raises(InputError, match="split would be empty"):
        prepare.run(params)


def test_questions_of_invisible_characters_are_missing():
    raw = frame(
        [
            ["\u200b\u200b\u200b", "What is the best way to learn Python?", 1],
            ["How do I learn Python?\x00", "What is the best\u200b way to learn Python?", 1],
        ]
    )
    cleaned, dropped = prepare.clean(raw, DATA, TextConfig(), "x.tsv")
    assert dropped["missing_question"] == 1
    assert cleaned.loc[0, "question1"] == "How do I learn Python?"
    assert cleaned.loc[0, "question2"] == "What is the best way to learn Python?"


COLUMN_SPLIT = {
    "strategy": "column",
    "column": "part",
    "column_values": {"tr": "train", "dev": "val", "te": "test"},
    "seed": 0,
    "train": 0.8,
    "val": 0.1,
    "test": 0.1,
}


def column_source(tmp_path, params, rows) -> None:
    """A pairs file with its own split column, as the raw stage's source."""
    source = tmp_path / "pairs.parquet"
    pd.DataFrame(rows, columns=["question1", "question2", "is_duplicate", "part"]).to_parquet(
        source, index=False
    )
    params["data"]["source"] = str(source)
    params["split"] = dict(COLUMN_SPLIT)
    raw.run(params)


def test_column_split_keeps_each_pair_where_its_column_says(tmp_path, params):
    rows = [
        ["How do I learn Python quickly?", "What is the fastest way to learn Python?", 1, "tr"],
        ["How do I learn Python quickly?", "What is the fastest way to learn Python?", 1, "tr"],
        ["What is the fastest way to learn Python?", "How do I learn Python quickly?", 1, "te"],
        ["Why is the sky blue on a clear day?", "What makes the sky look blue?", 1, "dev"],
        ["How do I cook rice in a pot?", "What is the capital city of France?", 0, "te"],
        ["Which laptop is best for programming?", "What should I eat for breakfast?", 0, "tr"],
    ]
    column_source(tmp_path, params, rows)
    report = prepare.run(params)
    parts = {
        name: pd.read_parquet(f"{params['paths']['processed']}/{name}.parquet")
        for name in ("train", "val", "test")
    }
    assert [len(parts[name]) for name in ("train", "val", "test")] == [2, 1, 2]
    assert set(parts["test"]["part"]) == {"te"} and set(parts["val"]["part"]) == {"dev"}
    assert report["dropped"]["duplicate_pair"] == 1  # the repeat inside train, not the test one
    assert report["split"]["pairs_recurring_across_splits"] == {"train": 1, "val": 0, "test": 1}


def test_column_split_without_its_column_or_with_an_unknown_value_is_one_error(tmp_path, params):
    rows = [
        ["How do I learn Python quickly?", "What is the fastest way to learn Python?", 1, "tr"],
        ["Why is the sky blue on a clear day?", "What makes the sky look blue?", 1, "holdout"],
    ]
    column_source(tmp_path, params, rows)
    with pytest.raises(InputError, match=r"part must be one of tr, dev, te.*row 2 \('holdout'\)"):
        prepare.run(params)
    params["split"]["column"] = "wang_split"
    with pytest.raises(InputError, match="needs a column 'wang_split'.*found question1"):
        prepare.run(params)


@pytest.mark.parametrize(
    "values", [{"tr": "train", "te": "test"}, {"tr": "train", "dev": "dev", "te": "test"}, []]
)
def test_column_values_must_reach_train_val_and_test(values):
    from pipeline.errors import ParamsError
    from pipeline.stages.prepare import SPLIT

    with pytest.raises(ParamsError, match="split.column_values: .*train, val and test"):
        SPLIT.check({"split": {**COLUMN_SPLIT, "column_values": values}})


@needs_shared
def test_the_full_release_splits_as_published():
    """The standard partition of the full release, read from ../shared (skipped if absent)."""
    full = SHARED_TSV.parent / "quora_pairs_full.parquet"
    if not full.exists():
        pytest.skip(f"full release not found at {full}")
    pairs = pd.read_parquet(full, columns=["question1", "question2", "is_duplicate", "wang_split"])
    split = {**COLUMN_SPLIT, "column": "wang_split"}
    split["column_values"] = {"train": "train", "dev": "val", "test": "test"}
    prepare.check_split_column(pairs, split, "full")
    parts, info = prepare.split_pairs(pairs, split, TextConfig())
    assert {name: len(part) for name, part in parts.items()} == {
        "train": 374_287,
        "val": 9_787,
        "test": 9_804,
    }
    assert parts["test"]["is_duplicate"].mean() == pytest.approx(0.498, abs=0.001)
    # the release's README: no pair recurs across its splits
    assert info["pairs_recurring_across_splits"] == {"train": 0, "val": 0, "test": 0}
