"""Faults a user meets when scoring: each is one clear line (exit 2), or a run that writes
everything faithfully; nothing is lost and no temporary file is left behind."""

import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_cli

from pipeline import score
from pipeline.bundle import load_bundle
from pipeline.errors import BundleError
from pipeline.tables import open_table

Q1 = "How do I learn Python quickly?"
Q2 = "What is the fastest way to learn Python?"


def cli(*args):
    return run_cli("pipeline.score", *args)


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if line.startswith("dupq-score")]


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def pairs_csv(path, n=5):
    pd.DataFrame({"question1": [Q1] * n, "question2": [Q2] * n}).to_csv(path, index=False)
    return path


def temps_beside(path):
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))


# -- the output side -------------------------------------------------------------------------
def test_output_that_is_a_directory_or_unwritable_fails_before_any_work(bundles, tmp_path):
    source = pairs_csv(tmp_path / "in.csv")
    (tmp_path / "out.csv").mkdir()
    result = cli("--model", bundles["logreg"], "--input", source, "--output", tmp_path / "out.csv")
    assert_one_line_error(result, "out.csv: is a directory")
    (tmp_path / "file").write_text("x")
    result = cli(
        "--model", bundles["logreg"], "--input", source, "--output", tmp_path / "file" / "o.csv"
    )
    assert_one_line_error(result, "file/o.csv: cannot write in", "not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only directory")
def test_output_in_a_read_only_directory(bundles, tmp_path):
    source = pairs_csv(tmp_path / "in.csv")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = cli("--model", bundles["logreg"], "--input", source, "--output", locked / "o.csv")
        assert_one_line_error(result, "o.csv: cannot write in", "permission denied")
    finally:
        locked.chmod(0o700)


def test_input_that_is_a_directory(bundles, tmp_path):
    (tmp_path / "in.csv").mkdir()
    result = cli(
        "--model", bundles["logreg"], "--input", tmp_path / "in.csv", "--output", tmp_path / "o.csv"
    )
    assert_one_line_error(result, "in.csv: is a directory")


def test_disk_full_mid_run_removes_the_temp_and_keeps_the_old_output(
    bundles, tmp_path, monkeypatch, capsys
):
    source = pairs_csv(tmp_path / "in.csv", n=30)
    out = tmp_path / "out.csv"
    out.write_text("the previous run's output\n")
    written = []

    def write_then_fill_up(self, frame):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        written.append(len(frame))

    monkeypatch.setattr(score.ChunkWriter, "write", write_then_fill_up)
    monkeypatch.setattr(score, "READ_ROWS", 10)
    code = score.main(
        ["--model", str(bundles["logreg"]), "--input", str(source), "--output", str(out)]
        + ["--chunk-rows", "10", "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "left unchanged" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.read_text() == "the previous run's output\n"
    assert temps_beside(out) == []


def slow_run(bundles, tmp_path, out, signal_to_send):
    """Start scoring a big file, send a signal once the run is writing; return the result."""
    source = tmp_path / "big.csv"
    n = 300_000
    pd.DataFrame(
        {
            "question1": [f"How do I learn topic {i} quickly?" for i in range(n)],
            "question2": [f"What is the fastest way to learn topic {i}?" for i in range(n)],
        }
    ).to_csv(source, index=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.score", "--model", str(bundles["esim"])]
        + ["--input", str(source), "--output", str(out), "--chunk-rows", "20000"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not temps_beside(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temps_beside(out), "the run never started writing"
    time.sleep(3)  # well inside the run: TensorFlow loaded, chunks being scored
    process.send_signal(signal_to_send)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


@pytest.mark.parametrize(
    "signal_to_send, code, word",
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_sigterm_and_ctrl_c_remove_the_temp_and_keep_the_old_output(
    bundles, tmp_path, signal_to_send, code, word
):
    out = tmp_path / "out.csv"
    out.write_text("kept\n")
    returncode, stderr = slow_run(bundles, tmp_path, out, signal_to_send)
    assert returncode == code, stderr
    assert "Traceback" not in stderr and our_lines(stderr) == [
        f"dupq-score: {word}; {out} left unchanged"
    ]
    assert out.read_text() == "kept\n" and temps_beside(out) == []


def test_a_killed_runs_temp_is_removed_by_the_next_run(bundles, tmp_path):
    out = tmp_path / "out.csv"
    returncode, _ = slow_run(bundles, tmp_path, out, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    left = temps_beside(out)
    assert left, "SIGKILL leaves its temporary file"
    (tmp_path / "live").mkdir()
    busy = tmp_path / "live" / f".out.csv.{socket.gethostname()}.{os.getpid()}.x.tmp"
    busy.write_text("a live process's file")  # this test's own pid: alive, so kept
    result = cli(
        "--model", bundles["logreg"], "--input", pairs_csv(tmp_path / "in.csv"), "--output", out
    )
    assert result.returncode == 0, result.stderr
    assert temps_beside(out) == [] and len(pd.read_csv(out)) == 5
    from pipeline.io import remove_stale_temps

    assert remove_stale_temps(tmp_path / "live" / "out.csv") == [] and busy.exists()


# -- bundles ---------------------------------------------------------------------------------
def damaged(bundles, tmp_path, name="residual"):
    copy = tmp_path / name
    shutil.copytree(bundles[name], copy)
    return copy


def edit_meta(bundle, change):
    meta = json.loads((bundle / "bundle.json").read_text())
    change(meta)
    (bundle / "bundle.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: (b / "model.keras").write_bytes(b"\x00" * 64), "bundle corrupted: model.keras"),
        (
            lambda b: (b / "text_model.npz").write_bytes((b / "text_model.npz").read_bytes()[:99]),
            "bundle corrupted: text_model.npz",
        ),
        (lambda b: (b / "model.keras").unlink(), "incomplete bundle, missing model.keras"),
        (lambda b: (b / "bundle.json").write_text("[1, 2]"), "bundle.json: not a JSON object"),
        (lambda b: (b / "bundle.json").write_text("{"), "bundle.json: unreadable"),
        (lambda b: edit_meta(b, lambda m: m.pop("threshold")), "threshold: None is not a number"),
        (
            lambda b: edit_meta(b, lambda m: m.update(threshold="high")),
            "threshold: 'high' is not a number in [0, 1]",
        ),
        (lambda b: edit_meta(b, lambda m: m.update(threshold=1.5)), "threshold: 1.5 is not"),
        (
            lambda b: edit_meta(b, lambda m: m.update(calibration={"coef": "x"})),
            "calibration: {'coef': 'x'} is not null",
        ),
        (lambda b: edit_meta(b, lambda m: m.update(kind="logreg")), "kind logreg reads"),
        (lambda b: edit_meta(b, lambda m: m.pop("files")), "files: not a mapping"),
    ],
)
def test_every_damaged_bundle_is_one_line_and_exit_2(bundles, tmp_path, damage, message):
    bundle = damaged(bundles, tmp_path)
    damage(bundle)
    with pytest.raises(BundleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_bundle(bundle)
    result = cli(
        "--model", bundle, "--input", pairs_csv(tmp_path / "in.csv"), "--output", tmp_path / "o.csv"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in our_lines(result.stderr) if message in line], result.stderr
    assert len(our_lines(result.stderr)) == 1 and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "high"])
def test_threshold_outside_0_1_is_a_usage_error(bundles, tmp_path, value):
    result = cli(
        "--model", bundles["logreg"], "--input", pairs_csv(tmp_path / "in.csv"),
        "--output", tmp_path / "o.csv", "--threshold", value,
    )  # fmt: skip
    assert result.returncode == 2 and "--threshold" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o.csv").exists()


# -- input formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad_line", ["[1, 2]", "5", "null", '"text"', '{"question1": '])
def test_a_jsonl_line_that_is_not_an_object_is_named_by_its_line_number(
    bundles, tmp_path, bad_line
):
    good = json.dumps({"question1": Q1, "question2": Q2})
    lines = [good] * 6 + [""] + [good] * 4 + [bad_line] + [good] * 3  # the bad one is line 12
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = cli(
        "--model", bundles["logreg"], "--input", source, "--output", tmp_path / "o.csv",
        "--chunk-rows", "4",
    )  # fmt: skip
    assert_one_line_error(result, "in.jsonl: line 12: not")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".jsonl"])
def test_pass_through_columns_whose_type_changes_are_written_faithfully(bundles, tmp_path, ext):
    rows = [{"question1": Q1, "question2": Q2, "ref": 7, "note": None}] * 3
    rows += [{"question1": Q1, "question2": Q2, "ref": "A-7", "note": "late text"}] * 3
    source = tmp_path / "in.jsonl"
    pd.DataFrame(rows).to_json(source, orient="records", lines=True)
    out = tmp_path / f"out{ext}"
    result = cli(
        "--model", bundles["logreg"], "--input", source, "--output", out, "--chunk-rows", "3"
    )
    assert result.returncode == 0, result.stderr
    if ext == ".parquet":
        written = pd.read_parquet(out)
        assert pq.read_schema(out).field("ref").type == "string"
    elif ext == ".jsonl":
        written = pd.read_json(out, lines=True, dtype=False)
    else:
        written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert [str(v) for v in written["ref"]] == ["7"] * 3 + ["A-7"] * 3
    notes = [None if pd.isna(v) or v == "" else v for v in written["note"]]
    assert notes == [None] * 3 + ["late text"] * 3
    assert len(written) == 6 and written["probability"].notna().all()


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_a_pass_through_column_of_mixed_types_in_one_chunk_is_written(bundles, tmp_path, ext):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"question1": Q1, "question2": Q2, "level": level}) + "\n"
            for level in (1, "high", 2.5)
        )
    )
    out = tmp_path / f"out{ext}"
    result = cli("--model", bundles["logreg"], "--input", source, "--output", out)
    assert result.returncode == 0, result.stderr
    written = open_table(out).read()
    assert [str(v) for v in written["level"]] == ["1", "high", "2.5"]
    assert written["probability"].notna().all()


def test_header_only_parquet_keeps_its_column_types(bundles, tmp_path):
    source = tmp_path / "in.parquet"
    pd.DataFrame(
        {"id": pd.Series([], dtype="int64"), "question1": pd.Series([], dtype="string")}
        | {"question2": pd.Series([], dtype="string"), "w": pd.Series([], dtype="float64")}
    ).to_parquet(source, index=False)
    out = tmp_path / "out.parquet"
    result = cli("--model", bundles["logreg"], "--input", source, "--output", out)
    assert result.returncode == 0, result.stderr
    schema = pq.read_schema(out)
    assert schema.field("id").type == "int64" and schema.field("w").type == "double"
    assert {"probability", "prediction", "error"} <= set(schema.names)


def test_questions_of_invisible_characters_are_empty_when_scored(bundles, tmp_path):
    frame = pd.DataFrame(
        {"question1": ["\u200b\u200b", Q1, "\x00"], "question2": [Q2, "\ufeff\u2060", Q2]}
    )
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    result = cli("--model", bundles["logreg"], "--input", source, "--output", tmp_path / "o.csv")
    assert result.returncode == 0, result.stderr
    errors = pd.read_csv(tmp_path / "o.csv")["error"].tolist()
    assert errors == ["question1 is empty", "question2 is empty", "question1 is empty"]


# -- the Python API --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "q1s, q2s, message",
    [
        ([Q1, Q1], [Q2], "q1s has 2 questions and q2s 1"),
        ([], [Q2], "q1s has 0 questions and q2s 1"),
        (None, None, "q1s must be a sequence of questions"),
        (Q1, Q2, "q1s must be a sequence of questions .* got str"),
    ],
)
def test_predict_proba_rejects_inputs_that_do_not_pair_up(bundles, q1s, q2s, message):
    bundle = load_bundle(bundles["logreg"])
    with pytest.raises(ValueError, match=message):
        bundle.predict_proba(q1s, q2s)
    assert bundle.predict_proba([], []).shape == (0,)
    probability = bundle.predict_proba(np.array([Q1]), pd.Series([Q2]))
    assert probability.shape == (1,) and not math.isnan(probability[0])
