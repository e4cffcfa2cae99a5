"""Scoring on Apache Spark: dupq-score's bundles and code over a Spark DataFrame.

`score_dataframe(df, model)` appends `probability`, `prediction` and `error` to every row,
with the same numbers as `dupq-score`: each Arrow batch of a partition goes through
`score.prepare_chunk` and `score.finish_chunk`, so each distinct question of a batch is
featurized once and bad rows keep their place with an error. Each Python worker loads the
bundle once (checked against the files' sha256 as every load is) and keeps it.

The bundle (with an ensemble's members) is shipped to the executors with
`SparkContext.addFile`, so no one copies it by hand; `ship=False` reads it from its path on
every executor instead (a shared filesystem).

`score_files` is `dupq-score --engine spark`: Parquet, CSV, TSV or JSON lines in (a path or a
glob), Parquet out through Spark's committer. A local output directory is written beside its
place and swapped in only when the job succeeds, so a failed run leaves no partial output.
Needs the `spark` extra (pyspark) and Java 17 or later.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.bundle import Bundle, check_bundle, load_bundle
from pipeline.errors import BundleError, InputError, UserError
from pipeline.io import atomic_directory, read_json, sha256_of, table_format
from pipeline.score import (
    CHUNK_QUESTIONS,
    NEW_COLUMNS,
    finish_chunk,
    prepare_chunk,
    questions_per_chunk,
)

PREDICT_BATCH = 8192
CHUNK_ROWS = 200_000  # rows a Python worker scores together
_LOADED: dict[tuple[str, str], Bundle] = {}  # per Python worker: (path, sha256) -> bundle


def bundle_directories(model: Path) -> list[Path]:
    """The bundle and every bundle it reads (an ensemble's members, and theirs)."""
    model = model.resolve()
    found = [model]
    spec = model / "ensemble.json"
    if spec.exists():
        for member in read_json(spec)["members"]:
            found += bundle_directories(model / member["path"])
    return list(dict.fromkeys(found))


def _staged_copy(model: Path, staging: Path) -> Path:
    """The bundle and its members copied under `staging` with their relative layout; returns
    the bundle's path inside."""
    directories = bundle_directories(model)
    common = Path(os.path.commonpath(directories)) if len(directories) > 1 else model.parent
    for directory in directories:
        shutil.copytree(directory, staging / directory.relative_to(common))
    return model.resolve().relative_to(common)


def _worker_bundle(root: str | None, relative: str, digest: str) -> Bundle:
    """The bundle in this Python worker, loaded on first use and kept."""
    key = (relative if root is None else f"{root}/{relative}", digest)
    if key not in _LOADED:
        if root is None:
            path = Path(relative)
        else:
            from pyspark import SparkFiles

            path = Path(SparkFiles.get(root)) / relative
        bundle = load_bundle(path)
        if sha256_of(path / "bundle.json") != digest:
            raise BundleError(
                f"{path}: not the bundle the job was started with (its bundle.json differs)"
            )
        _LOADED[key] = bundle
    return _LOADED[key]


def _question(column: pa.Array | pa.ChunkedArray) -> pd.Series:
    """A question column as dupq-score reads it: text as strings, anything else as it is
    (and so "not text")."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pd.Series(column.to_pandas(), dtype="string")
    return pd.Series(column.to_pandas(), dtype=object)


def chunks_of(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Spark's Arrow batches (10,000 rows by default) joined into chunks of about `rows`
    rows: a question that recurs within a chunk is featurized once."""
    group, count = [], 0
    for batch in batches:
        group.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(group)
            group, count = [], 0
    if group:
        yield pa.Table.from_batches(group)


def _scorer(root, relative, digest, question1, question2, threshold):
    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        bundle = _worker_bundle(root, relative, digest)
        cut = bundle.threshold if threshold is None else threshold
        # as dupq-score's chunks, but smaller: several workers share an executor's memory
        rows = min(CHUNK_ROWS, questions_per_chunk(bundle, CHUNK_QUESTIONS) // 2)
        for table in chunks_of(batches, rows):
            frame = pd.DataFrame(
                {
                    "question1": _question(table.column(question1)),
                    "question2": _question(table.column(question2)),
                }
            )
            chunk = prepare_chunk(bundle, frame, "question1", "question2", PREDICT_BATCH)
            scored = finish_chunk(bundle, chunk, cut, PREDICT_BATCH)
            prediction = scored["prediction"].to_numpy(dtype=np.float64, na_value=np.nan)
            new = {
                "probability": pa.array(scored["probability"].to_numpy(), pa.float64()),
                "prediction": pa.array(prediction, pa.int8(), mask=np.isnan(prediction)),
                "error": pa.array(scored["error"].to_numpy(object), pa.string()),
            }
            out = table
            for name in NEW_COLUMNS:
                out = out.append_column(name, new[name])
            yield from out.to_batches()

    return score_batches


def score_dataframe(
    df,
    model: str | Path,
    question1: str = "question1",
    question2: str = "question2",
    threshold: float | None = None,
    ship: bool = True,
):
    """`df` with `probability` (double), `prediction` (tinyint, null on error) and `error`
    (string, empty when scored) appended; its other columns pass through. The bundle is
    checked here first (its files and an ensemble's members'), so a missing or broken one fails
    before any task starts."""
    from pyspark.sql.types import ByteType, DoubleType, StringType, StructField, StructType

    model = Path(model)
    for directory in bundle_directories(model):  # its own clear error, on the driver
        check_bundle(directory)
    missing = [c for c in (question1, question2) if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")
    clash = [c for c in NEW_COLUMNS if c in df.columns]
    if clash:
        raise InputError(
            f"already has output column(s) {', '.join(clash)}; rename them so nothing is "
            "overwritten"
        )
    digest = sha256_of(model / "bundle.json")
    if ship:
        staging = Path(tempfile.mkdtemp(prefix="dupq-bundle-"))
        atexit.register(shutil.rmtree, staging, True)  # tasks fetch it until the job ends
        relative = _staged_copy(model, staging)
        df.sparkSession.sparkContext.addFile(str(staging), recursive=True)
        root = staging.name
    else:
        root, relative = None, model.resolve()
    schema = StructType(
        [
            *df.schema.fields,
            StructField("probability", DoubleType()),
            StructField("prediction", ByteType()),
            StructField("error", StringType()),
        ]
    )
    scorer = _scorer(root, str(relative), digest, question1, question2, threshold)
    return df.mapInArrow(scorer, schema)


def require_spark() -> None:
    """A clear error where pyspark or Java is missing, rather than Spark's own."""
    if importlib.util.find_spec("pyspark") is None:
        raise UserError("scoring on Spark needs pyspark: pip install 'dupq[spark]'")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise UserError(
            "scoring on Spark needs Java 17 or later (Debian: apt-get install "
            "openjdk-17-jre-headless)"
        )


def spark_session(master: str = "local[*]"):
    """A Spark session for dupq-score (no web UI)."""
    require_spark()
    from pyspark.sql import SparkSession

    # local workers run this Python, which has dupq (pyspark would start `python3`)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master)
        .appName("dupq-score")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def read_pairs(spark, path: str, fmt: str | None = None):
    """Parquet, CSV, TSV or JSON lines (a path, a directory or a glob) as a DataFrame; CSV
    and TSV cells stay text, as dupq-score reads them."""
    fmt = table_format(path.rstrip("/"), fmt)
    if fmt == "parquet":
        return spark.read.parquet(path)
    if fmt == "jsonl":
        return spark.read.json(path)
    return spark.read.csv(
        path,
        header=True,
        sep="\t" if fmt == "tsv" else ",",
        multiLine=True,
        escape='"',
        enforceSchema=False,
    )


def score_files(
    model: str | Path,
    input_path: str,
    output: str,
    question1: str = "question1",
    question2: str = "question2",
    threshold: float | None = None,
    input_format: str | None = None,
    master: str = "local[*]",
) -> dict:
    """`dupq-score --engine spark`: score `input_path` into the Parquet directory `output`;
    returns counts of rows scored and with errors. A session already active is used and left
    running; otherwise the session started here ends with its JVM before this returns."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    owned = SparkSession.getActiveSession() is None  # a caller's session is left running
    spark = spark_session(master)
    try:
        try:
            pairs = read_pairs(spark, input_path, input_format)
        except PySparkException as err:  # no such path, no files, not that format
            reason = str(err).strip().splitlines()[0]
            raise InputError(f"{input_path}: cannot read ({reason})") from None
        try:
            scored = score_dataframe(pairs, model, question1, question2, threshold)
        except InputError as err:  # the columns: name the input
            raise InputError(f"{input_path}: {err}") from None
        if "://" in output:  # a cluster's filesystem: Spark's committer alone
            scored.write.parquet(output)
            written = spark.read.parquet(output)
        else:
            with atomic_directory(output) as staging:
                scored.write.mode("overwrite").parquet(str(staging))
            written = spark.read.parquet(output)
        counts = written.agg(
            F.count("*").alias("rows"), F.sum((F.col("error") != "").cast("int")).alias("errors")
        ).first()
    except (PySparkException, Py4JJavaError) as err:
        reason = _user_error_in(str(err))
        if reason is None:
            raise
        raise UserError(f"a Spark task failed: {reason}") from None
    finally:
        if owned:
            _stop_with_jvm(spark)
    rows, errors = int(counts["rows"]), int(counts["errors"] or 0)
    return {"rows": rows, "scored": rows - errors, "errors": errors}


def _stop_with_jvm(spark, wait_seconds: float = 60) -> None:
    """Stop the session and the JVM pyspark launched for it, and wait for that JVM to exit.
    When a task fails, a task still running on another core fails or is killed a moment later
    and the JVM logs it: waiting keeps those lines before dupq-score's own message, which
    must be the last line the user reads."""
    from pyspark import SparkContext

    spark.stop()
    gateway = SparkContext._gateway
    jvm = getattr(gateway, "proc", None)  # None for a JVM pyspark did not launch
    if jvm is None:
        return
    jvm.stdin.close()  # the JVM pyspark launched exits when its stdin closes (SPARK-4415)
    try:
        jvm.wait(wait_seconds)
    except subprocess.TimeoutExpired:
        jvm.kill()
        jvm.wait()
    gateway.close()
    SparkContext._gateway = SparkContext._jvm = None  # a later session launches a new JVM


def _user_error_in(trace: str) -> str | None:
    """The message of a dupq error (a broken bundle, say) raised in a Python worker, from the
    task failure's text; None when the failure is another one."""
    found = re.findall(r"^pipeline\.errors\.\w+: (.+)$", trace, flags=re.MULTILINE)
    return found[-1] if found else None
