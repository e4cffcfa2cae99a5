"""Scoring on Spark (`pipeline/spark.py`, `dupq-score --engine spark`) against dupq-score."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, our_lines, rehash

from pipeline.errors import BundleError, InputError
from pipeline.score import score_file
from pipeline.stages import train

if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
    pytest.skip(
        "Spark tests need pyspark (pip install '.[spark]') and Java 17+ "
        "(apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

# pyspark warns that it does not fully support pandas 3; dupq hands it Arrow batches only
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
KINDS = ["logreg", "siamese", "residual", "birnn_cnn", "esim", "re2", "gbdt", "ensemble"]
ENSEMBLE_MEMBERS = ["logreg", "gbdt"]
BAD_AT = 30  # the bad rows' first id


@pytest.fixture(scope="module")
def spark():
    from pipeline.spark import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def every_kind(featurized):
    """A bundle of every kind on the tiny data (those earlier tests trained are reused; the
    ensemble is fitted again, as they may have retrained its members)."""
    models = Path(featurized["paths"]["models"])
    for name in KINDS[:-1]:
        if not (models / name / "bundle.json").exists():
            train.run(featurized, name)
    section = {**featurized["ensemble"], "members": ENSEMBLE_MEMBERS}
    train.run({**featurized, "ensemble": section}, "ensemble")
    return models


@pytest.fixture(scope="module")
def pairs(featurized):
    """Test-split pairs, bad rows among them, with an id and an extra column."""
    test = pd.read_parquet(Path(featurized["paths"]["processed"]) / "test.parquet")
    good = test[["question1", "question2"]]
    assert len(good) > BAD_AT
    bad = pd.DataFrame(
        {
            "question1": [None, "   ", "How do I learn Python?", ""],
            "question2": ["Is Rust hard?", "Is Rust hard?", None, "What is love?"],
        }
    )
    frame = pd.concat([good.iloc[:BAD_AT], bad, good.iloc[BAD_AT:]], ignore_index=True)
    frame.insert(0, "id", np.arange(len(frame)))
    frame["note"] = [f"row {i}" for i in range(len(frame))]
    return frame


def expected(model: Path, pairs: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    source, output = tmp_path / "in.parquet", tmp_path / "local.parquet"
    pairs.to_parquet(source, index=False)
    score_file(model, source, output, quiet=True)
    return pd.read_parquet(output)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_scores_as_dupq_score_does(spark, every_kind, pairs, kind, tmp_path):
    from pipeline.spark import score_dataframe

    model = every_kind / kind
    local = expected(model, pairs, tmp_path)
    scored = score_dataframe(spark.createDataFrame(pairs), model)
    out = scored.toPandas().sort_values("id", ignore_index=True)
    assert list(out.columns) == [*pairs.columns, "probability", "prediction", "error"]
    assert out["note"].tolist() == pairs["note"].tolist()  # extra columns pass through
    assert out["error"].tolist() == local["error"].tolist()
    both = local["error"] == ""
    assert np.allclose(out["probability"][both], local["probability"][both], atol=1e-6, rtol=0), (
        kind
    )
    assert out["probability"][~both].isna().all()
    assert (out["prediction"][both].astype(int) == local["prediction"][both].astype(int)).all()
    assert out["prediction"][~both].isna().all()


def test_bad_rows_keep_their_place_with_dupq_scores_errors(spark, every_kind, pairs):
    from pipeline.spark import score_dataframe

    frame = spark.createDataFrame(pairs).repartition(3)  # rows spread over partitions
    out = score_dataframe(frame, every_kind / "logreg").toPandas().set_index("id").sort_index()
    assert out.loc[BAD_AT : BAD_AT + 3, "error"].tolist() == [
        "question1 is missing",
        "question1 is empty",
        "question2 is missing",
        "question1 is empty",
    ]
    assert (out.drop(index=range(BAD_AT, BAD_AT + 4))["error"] == "").all()


def test_broken_bundle_fails_the_job_with_the_bundles_own_message(
    spark, every_kind, pairs, tmp_path
):
    from pipeline.spark import score_dataframe

    broken = tmp_path / "residual"
    shutil.copytree(every_kind / "residual", broken)
    (broken / "model.keras").write_bytes(b"not a keras file")
    with pytest.raises(BundleError, match="model.keras"):  # its sha256 no longer matches
        score_dataframe(spark.createDataFrame(pairs), broken)
    rehash(broken)  # hashes match now: only loading the model can find the problem
    with pytest.raises(Exception, match="cannot load bundle"):
        score_dataframe(spark.createDataFrame(pairs), broken).collect()


def test_missing_or_clashing_columns_are_clear_errors(spark, every_kind, pairs):
    from pipeline.spark import score_dataframe

    frame = spark.createDataFrame(pairs.rename(columns={"question2": "q2"}))
    with pytest.raises(InputError, match="missing column.*question2"):
        score_dataframe(frame, every_kind / "logreg")
    clash = spark.createDataFrame(pairs.assign(error="x"))
    with pytest.raises(InputError, match="already has output column.*error"):
        score_dataframe(clash, every_kind / "logreg")


def spark_cli(model, source, output) -> subprocess.CompletedProcess:
    """`dupq-score --engine spark` on local[2], as a user runs it."""
    command = [sys.executable, "-m", "pipeline.score", "--engine", "spark", "--master", "local[2]"]
    return subprocess.run(
        [*command, "--model", str(model), "--input", str(source), "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_cli_scores_a_glob_into_parquet_and_a_failure_leaves_no_output(every_kind, pairs, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    pairs.iloc[:80].to_parquet(parts / "a.parquet", index=False)
    pairs.iloc[80:].to_parquet(parts / "b.parquet", index=False)
    output = tmp_path / "scored"
    done = spark_cli(every_kind / "gbdt", parts / "*.parquet", output)
    assert done.returncode == 0, done.stderr
    assert f"{len(pairs)} rows" in done.stderr and "4 with errors" in done.stderr
    out = pd.read_parquet(output).sort_values("id", ignore_index=True)
    local = expected(every_kind / "gbdt", pairs, tmp_path)
    assert np.allclose(out["probability"], local["probability"], atol=1e-6, equal_nan=True)
    assert [p.name for p in tmp_path.iterdir() if "scored" in p.name] == ["scored"]

    broken = tmp_path / "broken"  # its files match their hashes: only a worker finds out
    shutil.copytree(every_kind / "residual", broken)
    (broken / "model.keras").write_bytes(b"not a keras file")
    rehash(broken)
    failed = spark_cli(broken, parts / "*.parquet", tmp_path / "other")
    assert failed.returncode == 2
    last = our_lines(failed.stderr)[-1]
    assert "a Spark task failed" in last and "cannot load bundle" in last
    assert not [p for p in tmp_path.iterdir() if "other" in p.name]  # nothing partial

    missing = spark_cli(
        str(every_kind / "gbdt"), str(tmp_path / "nowhere" / "*.parquet"), str(tmp_path / "other")
    )
    assert missing.returncode == 2
    assert "nowhere/*.parquet: cannot read" in our_lines(missing.stderr)[-1]


def test_score_files_ends_its_own_jvm_and_leaves_a_callers_session_running(
    every_kind, pairs, tmp_path, spark
):
    """dupq-score's last line must be its own: the JVM it launched (whose log lines would
    otherwise arrive late) has exited when score_files returns."""
    from pipeline.spark import score_files

    source = tmp_path / "pairs.parquet"
    pairs.to_parquet(source, index=False)
    model = every_kind / "gbdt"
    alone = f"""
import psutil
from pipeline.spark import score_files
score_files({str(model)!r}, {str(source)!r}, {str(tmp_path / "alone")!r}, master="local[2]")
print("processes left:", len(psutil.Process().children(recursive=True)))
"""
    done = subprocess.run(
        [sys.executable, "-c", alone], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "processes left: 0"

    counts = score_files(model, str(source), str(tmp_path / "here"), master="local[2]")
    assert counts["rows"] == len(pairs)
    assert spark.range(3).count() == 3  # the module's session, which score_files used
