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
import csv
import gc
import logging
import mmap
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.bundle import Bundle, BundleError, Pairs, load_bundle
from pipeline.io import InputError, atomic_path, first_bad_utf8_line, table_format
from pipeline.text import to_arrow

__all__ = ["load_bundle", "score_file", "main"]
log = logging.getLogger("score")
NEW_COLUMNS = ("probability", "prediction", "error")
BLOCK = 1 << 24  # bytes read at a time by the UTF-8 check
# Arrow's CSV reader parses blocks ahead, so its block sets its memory (measured: 36 MB at
# 2 MB, 450 MB at 16 MB); a row must fit in one block, so long lines get a bigger block.
CSV_BLOCK = 1 << 21
# A chunk's memory is mostly one row of model values per distinct question (2.5 KB for
# `residual`), so chunks are cut at CHUNK_QUESTIONS distinct questions as well as at
# CHUNK_ROWS rows: all-new questions give 200k-row chunks (residual: about 3.6 GB at the peak),
# while repetitive input gets longer chunks, each question encoded once for more rows.
CHUNK_ROWS = 1_000_000
CHUNK_QUESTIONS = 400_000
# Models with big encodings (esim keeps one per token: ~16 KB a question) get fewer questions a
# chunk, so that a chunk's encodings stay under this many bytes.
CHUNK_ENCODING_BYTES = 1 << 30
READ_ROWS = 100_000  # the input is read in frames of this many rows, joined into chunks


def check_utf8(path: Path) -> int:
    """Fail before any work if a text file is not UTF-8, naming the first bad line; return
    the length of its longest line in bytes (the CSV reader's block must hold a row).

    Arrow validates whole blocks (fast, off the GIL); only a file that fails is read again
    line by line to find the line.
    """
    longest = 0
    with open(path, "rb") as f:
        rest = b""
        for block in iter(lambda: f.read(BLOCK), b""):
            block = rest + block
            cut = block.rfind(b"\n") + 1  # a UTF-8 character never spans a newline
            lines, rest = block[:cut], block[cut:]
            if not _is_utf8(lines):
                break
            longest = max(longest, _longest_line(lines))
        else:
            if _is_utf8(rest):
                return max(longest, len(rest))
    raise _not_utf8(path)


def _longest_line(lines: bytes) -> int:
    ends = np.flatnonzero(np.frombuffer(lines, dtype=np.uint8) == ord("\n"))
    return int(np.diff(ends, prepend=-1).max()) if len(ends) else 0


def _not_utf8(path: Path) -> InputError:
    line, reason = first_bad_utf8_line(path)
    return InputError(f"{path}: line {line}: not valid UTF-8 ({reason}); re-encode it as UTF-8")


def _is_utf8(data: bytes) -> bool:
    try:
        pa.array([data], pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return False
    return True


def read_header(path: Path, fmt: str) -> list[str]:
    """The input's column names; a header that is not UTF-8 or repeats a name is an error."""
    if fmt == "parquet":
        try:
            return pq.ParquetFile(path).schema_arrow.names
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"{path}: not a readable parquet file ({err})") from None
    try:
        header = _text_header(path, fmt)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except csv.Error as err:  # e.g. a quote never closed, swallowing the file into one name
        raise InputError(f"{path}: cannot parse the header ({err})") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: header: column name(s) repeated: {', '.join(repeated)}")
    return header


def _text_header(path: Path, fmt: str) -> list[str]:
    if fmt == "jsonl":
        with open(path, encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), None)
        if first is None:
            return []
        try:
            return list(pd.read_json(StringIO(first), lines=True).columns)
        except ValueError as err:
            raise InputError(f"{path}: line 1: not a JSON object ({err})") from None
    with open(path, encoding="utf-8-sig", newline="") as f:
        # the first non-blank record, as the CSV reader reads it (quoted newlines included)
        return next((row for row in csv.reader(f, delimiter=_delimiter(fmt)) if row), [])


def _delimiter(fmt: str) -> str:
    return "\t" if fmt == "tsv" else ","


def read_chunks(
    path: Path, fmt: str, rows: int, csv_block: int = CSV_BLOCK
) -> Iterator[pd.DataFrame]:
    """The input in chunks of `rows` rows, so memory stays flat whatever the file size."""
    try:
        yield from _chunks(path, fmt, rows, csv_block)
    except (ValueError, pd.errors.ParserError, pa.ArrowInvalid) as err:
        raise InputError(f"{path}: cannot parse as {fmt}: {err}") from None


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


def _chunks(path: Path, fmt: str, rows: int, csv_block: int) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    elif fmt == "jsonl":
        yield from pd.read_json(path, lines=True, chunksize=rows, dtype=False, encoding="utf-8-sig")
    else:
        yield from _csv_chunks(path, fmt, rows, csv_block)


def _csv_chunks(path: Path, fmt: str, rows: int, block: int) -> Iterator[pd.DataFrame]:
    """CSV/TSV through Arrow's streaming reader (parses off the GIL, on all cores), re-cut
    into chunks of `rows` rows. Every column is read as text, as written: an empty cell is
    missing, anything else (ids with leading zeros, "NA") is kept verbatim."""
    bad_rows = []

    def on_bad_row(row) -> str:
        bad_rows.append(row)
        return "error"

    header = read_header(path, fmt)
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=block),
            parse_options=pa_csv.ParseOptions(
                delimiter=_delimiter(fmt), newlines_in_values=True, invalid_row_handler=on_bad_row
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        pending: list[pa.RecordBatch] = []
        for batch in reader:
            pending.append(batch)
            while sum(b.num_rows for b in pending) >= rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, rows).to_pandas()
                pending = table.slice(rows).to_batches()
        if pending:
            yield pa.Table.from_batches(pending).to_pandas()
    except pa.ArrowInvalid:
        if not bad_rows:
            raise
        row = bad_rows[0]
        raise InputError(
            f"{path}: line {_line_of(path, row.text)}: {row.actual_columns} fields where the "
            f"header has {row.expected_columns}: {row.text[:80]!r}"
        ) from None


def _line_of(path: Path, text: str) -> int | str:
    """The line where `text` (a row as Arrow saw it) starts; Arrow reports no line number
    when quoted fields may hold newlines."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        offset = data.find(text.encode("utf-8"))
        return "?" if offset < 0 else data[:offset].count(b"\n") + 1


class ChunkWriter:
    """Appends scored chunks to one output file in csv, tsv, jsonl or parquet."""

    def __init__(self, path: Path, fmt: str, source: Path):
        self.path, self.fmt, self.source = path, fmt, source
        self.writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        self.handle = open(path, "w", encoding="utf-8") if fmt == "jsonl" else None
        self.wrote_header = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "jsonl":
            if len(frame):  # pandas ends each lines=True dump with a newline
                frame.to_json(self.handle, orient="records", lines=True, force_ascii=False)
            self.wrote_header = True
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            if self.fmt == "parquet":
                self.writer = pq.ParquetWriter(self.path, table.schema)
            else:  # arrow's CSV writer (quotes only where needed, empty cell for a null)
                delimiter = "\t" if self.fmt == "tsv" else ","
                self.handle = open(self.path, "wb")
                header = frame.iloc[:0].to_csv(sep=delimiter, index=False, lineterminator="\n")
                self.handle.write(header.encode("utf-8"))  # arrow would quote every name
                options = pa_csv.WriteOptions(
                    include_header=False, delimiter=delimiter, quoting_style="needed"
                )
                self.writer = pa_csv.CSVWriter(self.handle, table.schema, write_options=options)
            self.schema = table.schema
        try:
            table = table.cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
            raise InputError(
                f"{self.source}: a column changes type between chunks ({err}); "
                "give each column one type"
            ) from None
        self.writer.write_table(table)
        self.wrote_header = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.handle is not None and not self.handle.closed:
            self.handle.close()


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
    pairs = Pairs.from_columns(frame[q1_col], frame[q2_col], bundle.text_model.text.unicode_form)
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
        probability[valid] = bundle.probability(raw, first, second)
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
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise InputError(f"{input_path}: file not found")
    in_fmt = table_format(input_path, input_format)
    out_fmt = table_format(output_path, output_format)
    if input_path.stat().st_size == 0:
        raise InputError(f"{input_path}: empty file (not even a header)")
    columns = read_header(input_path, in_fmt)
    if not columns:
        raise InputError(f"{input_path}: empty file (no header)")
    missing = [c for c in (q1_col, q2_col) if c not in columns]
    if missing:
        raise InputError(
            f"{input_path}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, columns))}"
        )
    clash = [c for c in NEW_COLUMNS if c in columns]
    if clash:
        raise InputError(
            f"{input_path}: already has output column(s) {', '.join(clash)}; "
            "rename them so nothing is overwritten"
        )
    # TensorFlow loads on the side while the whole file is checked and its first chunk read
    bundle = load_bundle(model, wait=False)
    csv_block = CSV_BLOCK
    if in_fmt != "parquet":
        csv_block = max(CSV_BLOCK, 4 * check_utf8(input_path))
    threshold = bundle.threshold if threshold is None else float(threshold)

    counts = {"rows": 0, "scored": 0, "errors": 0}
    start = time.perf_counter()
    show = not quiet and sys.stderr.isatty()
    with (
        atomic_path(output_path) as tmp,
        tqdm(unit=" rows", disable=not show, desc="scoring") as bar,
    ):
        writer = ChunkWriter(tmp, out_fmt, input_path)
        try:
            frames = read_chunks(input_path, in_fmt, min(chunk_rows, READ_ROWS), csv_block)
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
                empty = pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
                chunk = prepare_chunk(bundle, empty, q1_col, q2_col, predict_batch)
                writer.write(finish_chunk(bundle, chunk, threshold, predict_batch))
            bundle.wait_until_loaded()  # a broken model fails the run even if nothing was scored
        finally:
            writer.close()
    counts["seconds"] = round(time.perf_counter() - start, 3)
    return counts


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dupq-score", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model bundle directory (models/<name>)")
    parser.add_argument("--input", required=True, help="pairs to score: .csv .tsv .parquet .jsonl")
    parser.add_argument("--output", required=True, help="where to write the scored rows")
    parser.add_argument("--q1-col", default="question1")
    parser.add_argument("--q2-col", default="question2")
    parser.add_argument(
        "--threshold",
        type=float,
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
    args = parser.parse_args(argv)
    try:
        counts = score_file(
            args.model,
            args.input,
            args.output,
            args.q1_col,
            args.q2_col,
            args.threshold,
            args.chunk_rows,
            input_format=args.format,
            output_format=args.output_format,
            quiet=args.quiet,
        )
    except (InputError, BundleError) as err:
        print(f"dupq-score: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        rate = counts["rows"] / counts["seconds"] if counts["seconds"] else 0.0
        print(
            f"dupq-score: {counts['rows']} rows -> {args.output}: {counts['scored']} scored, "
            f"{counts['errors']} with errors ({rate:,.0f} rows/s)",
            file=sys.stderr,
        )
    # The process ends next: keep TensorFlow's million objects out of the interpreter's final
    # garbage collections, which would take most of a second to find nothing to free.
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
