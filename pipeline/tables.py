"""Tables of question pairs: the one reader for every file the user gives (prepare's source,
the scorer's input) and the scorer's chunked writer.

Formats: .csv, .tsv, .parquet, .jsonl. Text files must be UTF-8 (the first bad line is named).
CSV and TSV cells are read as text, as written: an empty cell is missing, a quoted empty cell
("") is empty text, anything else ("007", "NA") is kept verbatim; quoted fields may hold
newlines; a row with more or fewer fields than the header is an error naming its line. Every
file is read in chunks, so memory stays flat whatever its size.
"""

from __future__ import annotations

import csv
import itertools
import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline.io import InputError, first_bad_utf8_line, table_format

BLOCK = 1 << 24  # bytes read at a time by the UTF-8 check
# Arrow's CSV reader parses blocks ahead, so its block sets its memory (measured: 36 MB at
# 2 MB, 450 MB at 16 MB); a row must fit in one block, so long lines get a bigger block.
CSV_BLOCK = 1 << 21
READ_ROWS = 100_000  # rows per frame read


@dataclass
class Table:
    """A checked input table: a readable file of a known format with the required columns."""

    path: Path
    fmt: str
    columns: list[str]
    csv_block: int = CSV_BLOCK

    def check_encoding(self) -> None:
        """Fail if a text file is not UTF-8, naming the line; size the CSV reader's block to
        hold the longest line. A whole-file scan: the scorer runs it while its model loads."""
        if self.fmt != "parquet":
            self.csv_block = max(CSV_BLOCK, 4 * check_utf8(self.path))

    def chunks(self, rows: int = READ_ROWS) -> Iterator[pd.DataFrame]:
        return read_chunks(self.path, self.fmt, rows, self.csv_block)

    def empty(self) -> pd.DataFrame:
        """The table's columns with no rows: a parquet file keeps its column types."""
        if self.fmt == "parquet":
            return pq.ParquetFile(self.path).schema_arrow.empty_table().to_pandas()
        return pd.DataFrame({c: pd.Series(dtype="string") for c in self.columns})

    def read(self) -> pd.DataFrame:
        """The whole table (for files that fit in memory, such as a training set)."""
        self.check_encoding()
        frames = list(self.chunks())
        return pd.concat(frames, ignore_index=True) if frames else self.empty()


def open_table(path: str | Path, fmt: str | None = None, required: tuple = ()) -> Table:
    """Check what can be checked cheaply before any work: the file, its format, its header
    and the `required` columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file of pairs")
    fmt = table_format(path, fmt)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (not even a header)")
    columns = read_header(path, fmt)
    if not columns:
        raise InputError(f"{path}: empty file (no header)")
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, columns))}"
        )
    return Table(path, fmt, columns)


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
            numbered = ((n, line) for n, line in enumerate(f, 1) if line.strip())
            line_number, first = next(numbered, (0, None))
        if first is None:
            return []
        if not first.strip().startswith("{"):
            raise InputError(
                f"{path}: line {line_number}: not a JSON object: {first.strip()[:80]!r}"
            )
        try:
            return list(pd.read_json(StringIO(first), lines=True).columns)
        except ValueError as err:
            raise InputError(f"{path}: line {line_number}: not a JSON object ({err})") from None
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


def _chunks(path: Path, fmt: str, rows: int, csv_block: int) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    elif fmt == "jsonl":
        yield from _jsonl_chunks(path, rows)
    else:
        yield from _csv_chunks(path, fmt, rows, csv_block)


def _jsonl_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """JSON lines in chunks of `rows` lines; blank lines are skipped. A line that is not a
    JSON object is an error naming its line number in the file."""
    first_line = 1
    with open(path, encoding="utf-8-sig") as f:
        while lines := list(itertools.islice(f, rows)):
            text = pc.utf8_trim_whitespace(pa.array(lines, pa.string()))
            blank = pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
            not_object = ~blank & ~pc.starts_with(text, "{").to_numpy(zero_copy_only=False)
            if not_object.any():
                at = int(np.flatnonzero(not_object)[0])
                raise InputError(
                    f"{path}: line {first_line + at}: not a JSON object: {lines[at].strip()[:80]!r}"
                )
            records = "\n".join(text.filter(pa.array(~blank)).to_pylist())
            try:
                frame = pd.read_json(StringIO(records), lines=True, dtype=False)
            except ValueError:
                at, reason = _first_bad_json_line(lines)
                raise InputError(
                    f"{path}: line {first_line + at}: not valid JSON ({reason})"
                ) from None
            yield frame
            first_line += len(lines)


def _first_bad_json_line(lines: list[str]) -> tuple[int, str]:
    """Only run when a chunk failed to parse: which line, and why."""
    for at, line in enumerate(lines):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                return at, f"{err.msg} at column {err.colno}"
    return 0, "unreadable"


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
                quoted_strings_can_be_null=False,  # "" is an empty text, as the writer wrote it
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


def not_text(values: pd.Series) -> np.ndarray:
    """Per value: whether it is present but not text (a number, boolean, list or object, as
    JSON lines and parquet can hold). The one rule for questions everywhere: training
    (prepare), scoring and adding to a question index all treat such a value as an error."""
    if isinstance(values.dtype, pd.StringDtype):
        return np.zeros(len(values), dtype=bool)
    values = values.astype(object)
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return np.zeros(len(values), dtype=bool)
    # mixed values: only these need a look at each value (some cannot even be hashed)
    is_text = values.map(lambda value: isinstance(value, str))
    return ~(is_text | values.isna()).to_numpy(dtype=bool)


def unified_type(old: pa.DataType, new: pa.DataType) -> pa.DataType:
    """One type for a column seen as `old`, then `new`: all-null columns take the other's
    type, integers and floats meet as float64, anything else mixed becomes text."""
    if old == new or pa.types.is_null(new):
        return old
    if pa.types.is_null(old):
        return new
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(old) for f in numeric) and any(f(new) for f in numeric):
        return pa.float64()
    return pa.string()


def whole_table(frame: pd.DataFrame) -> pa.Table:
    """`frame` as an Arrow table with one chunk per column. Arrow-backed pandas columns keep
    the chunks they were concatenated from, empty ones included, and Arrow's CSV writer
    (26.0.1) writes raw memory for an empty large_string chunk: what is written must never
    depend on how a column happens to be cut. A column whose values share no one type
    (JSON lines with 1, "high" and 2.5 in one column) is written as their text."""
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of values of several types
        mixed = {name: frame[name].astype("string") for name in frame if _mixed(frame[name])}
        table = pa.Table.from_pandas(frame.assign(**mixed), preserve_index=False)
    return table.combine_chunks()


def _mixed(column: pd.Series) -> bool:
    """Whether Arrow finds no one type for the column's values (1, "high", 2.5)."""
    if column.dtype != object:
        return False
    try:
        pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return True
    return False


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows one after another. Empty frames are left out (pandas would keep them
    as empty Arrow chunks); when all are empty, the first gives the columns."""
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled or frames[:1], ignore_index=True)


class ChunkWriter:
    """Appends scored chunks to one output file in csv, tsv, jsonl or parquet.

    Input columns are written as they came, whatever their type. CSV and JSON lines are text
    chunk by chunk; a parquet file has one schema, so when a column's type changes between
    chunks (numbers, then text; nulls, then text) the part already written is rewritten with
    the unified type, and a column of mixed types within a chunk becomes text.
    """

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.handle = open(path, "w" if fmt == "jsonl" else "wb")
        self.wrote_header = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "jsonl":
            if len(frame):  # pandas ends each lines=True dump with a newline
                frame.to_json(self.handle, orient="records", lines=True, force_ascii=False)
        elif self.fmt == "parquet":
            self._write_parquet(whole_table(frame))
        else:  # arrow's CSV writer: quotes only where needed, an empty cell for a null
            delimiter = "\t" if self.fmt == "tsv" else ","
            if not self.wrote_header:  # pandas' header: arrow's would quote every name
                header = frame.iloc[:0].to_csv(sep=delimiter, index=False, lineterminator="\n")
                self.handle.write(header.encode("utf-8"))
            options = pa_csv.WriteOptions(
                include_header=False, delimiter=delimiter, quoting_style="needed"
            )
            pa_csv.write_csv(whole_table(frame), self.handle, options)
        self.wrote_header = True

    def _write_parquet(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.handle, self.schema)
        unified = pa.schema(
            [
                field.with_type(unified_type(field.type, table.schema.field(field.name).type))
                for field in self.schema
            ]
        )
        if unified != self.schema:
            self._rewrite_as(unified)
        self.writer.write_table(table.cast(self.schema))

    def _rewrite_as(self, schema: pa.Schema) -> None:
        """Re-cast what was written so far to `schema`, row group by row group."""
        self.writer.close()
        self.handle.close()
        previous = self.path.with_suffix(".previous.tmp")  # a temp name remove_stale_temps knows
        os.replace(self.path, previous)
        try:
            self.handle = open(self.path, "wb")
            self.writer = pq.ParquetWriter(self.handle, schema)
            written = pq.ParquetFile(previous)
            for group in range(written.num_row_groups):
                self.writer.write_table(written.read_row_group(group).cast(schema))
        finally:
            previous.unlink()
        self.schema = schema

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if not self.handle.closed:
            self.handle.close()
