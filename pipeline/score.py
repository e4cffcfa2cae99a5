"""Score new question pairs with a trained model bundle, streaming any size of file.

CLI: python -m pipeline.score --model models/<name> --input IN --output OUT (or `dupq-score`).
Every input row comes out, in order, with its columns plus `probability`, `prediction` and
`error` (empty when scored). Rows whose question is missing, not text or empty get an error
message instead of a score; they are never dropped. Whole-file problems stop before any work
with exit code 2 and a one-line message. OUT is written to a temporary file and renamed at
the end, so a failed run leaves no partial OUT and keeps an existing one.

Python API: `from pipeline.score import load_bundle`; `load_bundle(path).predict_proba(q1s, q2s)`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from pipeline.bundle import Bundle, Pairs, load_bundle, project_bundle
from pipeline.errors import run_cli
from pipeline.io import (
    InputError,
    atomic_path,
    check_writable,
    table_format,
)
from pipeline.tables import READ_ROWS, ChunkWriter, open_table
from pipeline.text import to_arrow

__all__ = ["load_bundle", "score_file", "main"]
log = logging.getLogger("score")
NEW_COLUMNS = ("probability", "prediction", "error")
# A chunk's memory is mostly one row of model values per distinct question (2.5 KB for
# `residual`), so chunks are cut at CHUNK_QUESTIONS distinct questions as well as at
# CHUNK_ROWS rows: all-new questions give 200k-row chunks (residual: about 3.6 GB at the peak),
# while repetitive input gets longer chunks, each question encoded once for more rows.
CHUNK_ROWS = 1_000_000
CHUNK_QUESTIONS = 400_000
# Models with big encodings (esim keeps one per token: ~16 KB a question) get fewer questions a
# chunk, so that a chunk's encodings stay under this many bytes.
CHUNK_ENCODING_BYTES = 1 << 30


def question_bounded_chunks(
    frames: Iterator[pd.DataFrame], q1_col: str, q2_col: str, max_rows: int, max_questions: int
) -> Iterator[pd.DataFrame]:
    """Consecutive frames joined into chunks of at most `max_rows` rows and `max_questions`
    distinct questions (counted per frame: a question in two frames counts twice)."""
    group, rows, questions = [], 0, 0
    for frame in frames:
        count = _question_count(frame[q1_col], frame[q2_col])
        if group and (rows + len(frame) > max_rows or questions + count > max_questions):
            yield group[0] if len(group) == 1 else pd.concat(group, ignore_index=True)
            group, rows, questions = [], 0, 0
        group.append(frame)
        rows, questions = rows + len(frame), questions + count
    if group:
        yield group[0] if len(group) == 1 else pd.concat(group, ignore_index=True)


def _question_count(q1: pd.Series, q2: pd.Series) -> int:
    """Distinct values of two text columns (Arrow's hash kernel); for columns of any other
    type (JSON lines), the number of cells, an upper bound that needs no hashing."""
    if isinstance(q1.dtype, pd.StringDtype) and isinstance(q2.dtype, pd.StringDtype):
        return pc.count_distinct(pa.chunked_array([to_arrow(q1), to_arrow(q2)])).as_py()
    return len(q1) + len(q2)


@dataclass
class PreparedChunk:
    frame: pd.DataFrame
    pairs: Pairs
    encodings: (
        object  # `Bundle.encode_questions` of the distinct questions; None when no pair is valid
    )


def prepare_chunk(
    bundle: Bundle, frame: pd.DataFrame, q1_col: str, q2_col: str, predict_batch: int
) -> PreparedChunk:
    """The per-question half of scoring a chunk: find bad rows, then normalize, featurize
    and encode each distinct question."""
    pairs = Pairs.from_columns(frame[q1_col], frame[q2_col], bundle.text_model.text)
    encodings = None
    if pairs.valid.any():
        encodings = bundle.encode_questions(bundle.model_inputs(pairs.questions), predict_batch)
    return PreparedChunk(frame, pairs, encodings)


def finish_chunk(
    bundle: Bundle, chunk: PreparedChunk, threshold: float, predict_batch: int
) -> pd.DataFrame:
    """The per-pair half: the chunk with probability, prediction and error columns added."""
    valid, errors = chunk.pairs.valid, chunk.pairs.errors
    probability = np.full(len(chunk.frame), np.nan, dtype=np.float64)
    if valid.any():
        first, second = chunk.pairs.first[valid], chunk.pairs.second[valid]
        raw = bundle.raw_from_encodings(chunk.encodings, first, second, predict_batch)
        probability[valid] = bundle.probability(raw, chunk.pairs.same_question(first, second))
    prediction = pd.array(np.where(valid, probability >= threshold, 0), dtype="Int8")
    prediction[~valid] = pd.NA
    return chunk.frame.assign(  # new columns only: the input's columns are not copied
        probability=probability, prediction=prediction, error=pd.array(errors, dtype="string")
    )


def prepared_chunks(
    bundle: Bundle, frames: Iterator[pd.DataFrame], q1_col: str, q2_col: str, predict_batch: int
) -> Iterator[PreparedChunk]:
    """Chunks prepared one ahead on a worker thread, so reading, text work and encoding
    overlap the per-pair work on the chunk before; holding one chunk ahead keeps memory flat.
    An error while reading or preparing is raised here, in the caller's thread."""
    frames = iter(frames)

    def prepare_next() -> PreparedChunk | None:
        frame = next(frames, None)
        return (
            None if frame is None else prepare_chunk(bundle, frame, q1_col, q2_col, predict_batch)
        )

    with ThreadPoolExecutor(1, thread_name_prefix="prepare") as pool:
        pending = pool.submit(prepare_next)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(prepare_next)
            yield chunk


def questions_per_chunk(bundle: Bundle, chunk_questions: int) -> int:
    """`chunk_questions`, lowered for a model whose question encodings would not fit in
    CHUNK_ENCODING_BYTES."""
    floats = bundle.encoding_floats
    if not floats:
        return chunk_questions
    return max(1, min(chunk_questions, CHUNK_ENCODING_BYTES // (4 * floats)))


def score_file(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    q1_col: str = "question1",
    q2_col: str = "question2",
    threshold: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
    chunk_questions: int = CHUNK_QUESTIONS,
    predict_batch: int = 8192,
    input_format: str | None = None,
    output_format: str | None = None,
    quiet: bool = False,
) -> dict:
    """Score `input_path` into `output_path`; returns counts of rows scored and with errors."""
    output_path = Path(output_path)
    source = open_table(input_path, input_format, required=(q1_col, q2_col))
    check_writable(output_path)
    out_fmt = table_format(output_path, output_format)
    clash = [c for c in NEW_COLUMNS if c in source.columns]
    if clash:
        raise InputError(
            f"{source.path}: already has output column(s) {', '.join(clash)}; "
            "rename them so nothing is overwritten"
        )
    # TensorFlow loads on the side while the whole file is checked and its first chunk read
    bundle = load_bundle(model, wait=False)
    source.check_encoding()
    threshold = bundle.threshold if threshold is None else float(threshold)

    counts = {"rows": 0, "scored": 0, "errors": 0}
    start = time.perf_counter()
    show = not quiet and sys.stderr.isatty()
    with (
        atomic_path(output_path) as tmp,
        tqdm(unit=" rows", disable=not show, desc="scoring") as bar,
    ):
        writer = ChunkWriter(tmp, out_fmt)
        try:
            frames = source.chunks(min(chunk_rows, READ_ROWS))
            questions = questions_per_chunk(bundle, chunk_questions)
            chunks = question_bounded_chunks(frames, q1_col, q2_col, chunk_rows, questions)
            for chunk in prepared_chunks(bundle, chunks, q1_col, q2_col, predict_batch):
                scored = finish_chunk(bundle, chunk, threshold, predict_batch)
                writer.write(scored)
                bad = int((scored["error"] != "").sum())
                counts["rows"] += len(scored)
                counts["errors"] += bad
                counts["scored"] += len(scored) - bad
                bar.update(len(scored))
            if not writer.wrote_header:  # header-only input: header-only output
                chunk = prepare_chunk(bundle, source.empty(), q1_col, q2_col, predict_batch)
                writer.write(finish_chunk(bundle, chunk, threshold, predict_batch))
            bundle.wait_until_loaded()  # a broken model fails the run even if nothing was scored
        finally:
            writer.close()
    counts["seconds"] = round(time.perf_counter() - start, 3)
    return counts


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dupq-score", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        help="model bundle directory, or a model's name: its bundle under the project's "
        "paths.models (models/<name>)",
    )
    parser.add_argument("--input", required=True, help="pairs to score: .csv .tsv .parquet .jsonl")
    parser.add_argument("--output", required=True, help="where to write the scored rows")
    parser.add_argument("--q1-col", default="question1")
    parser.add_argument("--q2-col", default="question2")
    parser.add_argument(
        "--threshold",
        type=_probability,
        default=None,
        help="probability cut for prediction (default: the bundle's)",
    )
    parser.add_argument(
        "--chunk-rows",
        "--batch-size",  # its old name, kept so that existing scripts still run
        dest="chunk_rows",
        type=_positive_int,
        default=CHUNK_ROWS,
        help=f"most input rows held in memory and scored per chunk (default {CHUNK_ROWS:,}; "
        f"chunks also end at {CHUNK_QUESTIONS:,} distinct questions)",
    )
    parser.add_argument(
        "--format",
        default=None,
        choices=["csv", "tsv", "parquet", "jsonl"],
        help="input format (default: from the extension)",
    )
    parser.add_argument(
        "--output-format",
        default=None,
        choices=["csv", "tsv", "parquet", "jsonl"],
        help="output format (default: from the extension)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument(
        "--engine",
        default="local",
        choices=["local", "spark"],
        help="local: stream the file in this process; spark: a Spark job (the `spark` extra) "
        "over a path or glob, writing a directory of Parquet files",
    )
    parser.add_argument("--master", default="local[*]", help="--engine spark: the Spark master URL")
    args = parser.parse_args(argv)
    if args.engine == "spark" and args.output_format not in (None, "parquet"):
        parser.error("--engine spark writes Parquet; leave out --output-format")
    return run_cli(
        "dupq-score", lambda: _run(args), f"{args.output} left unchanged", path=args.output
    )


def _run(args) -> int:
    start = time.perf_counter()
    model = project_bundle(args.model)
    common = (model, args.input, args.output, args.q1_col, args.q2_col, args.threshold)
    if args.engine == "spark":
        from pipeline.spark import score_files

        counts = score_files(*common, args.format, args.master)
        written = f"{args.output}/ (Parquet, Spark {args.master})"
    else:
        counts = score_file(
            *common,
            args.chunk_rows,
            input_format=args.format,
            output_format=args.output_format,
            quiet=args.quiet,
        )
        written = args.output
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(
            f"dupq-score: {counts['rows']} rows -> {written}: {counts['scored']} scored, "
            f"{counts['errors']} with errors ({counts['rows'] / seconds:,.0f} rows/s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
