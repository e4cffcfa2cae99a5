"""The chunked writer writes exactly the frame's values, whatever the chunk layout of its
Arrow-backed columns (empty chunks, slices, several pieces), in every format."""

import math

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.tables import ChunkWriter, concat_rows, open_table

FORMATS = ("csv", "tsv", "parquet", "jsonl")

# text a writer must quote or escape: delimiters, quotes, line breaks, non-ASCII, emoji
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",;\"'\t\n\r\\ {}[]:")),
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    ),
    max_size=40,
)
VALUES = st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=30)  # jsonl has no header


@st.composite
def chunked_column(draw):
    """A pandas column over an Arrow ChunkedArray cut at random places (empty chunks
    included), some chunks sliced out of a bigger array, as string or large_string."""
    values = draw(VALUES)
    arrow_type = draw(st.sampled_from([pa.string(), pa.large_string()]))
    cuts = sorted(draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [0, *cuts, len(values)]
    chunks = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        piece = values[start:end]
        if draw(st.booleans()):  # a slice of a bigger array: offsets that do not start at 0
            padded = pa.array(["pad", *piece, "pad"], arrow_type)
            chunks.append(padded.slice(1, len(piece)))
        else:
            chunks.append(pa.array(piece, arrow_type))
    if draw(st.booleans()):
        chunks.insert(0, pa.array([], arrow_type))  # the layout pandas' concat leaves
    array = pa.chunked_array(chunks, arrow_type)
    column = (
        pd.Series(pd.arrays.ArrowStringArray(array))
        if draw(st.booleans())
        else pd.Series(pd.arrays.ArrowExtensionArray(array))
    )
    return values, column


def write(frame: pd.DataFrame, path, fmt: str, pieces: int = 1) -> None:
    """Through the writer as the scorer calls it: chunk by chunk."""
    writer = ChunkWriter(path, fmt)
    try:
        if pieces == 1:  # as given: slicing would re-cut the columns' chunks
            writer.write(frame)
        else:
            step = max(1, math.ceil(len(frame) / pieces))
            for start in range(0, len(frame), step):
                writer.write(frame.iloc[start : start + step])
    finally:
        writer.close()


def as_list(series: pd.Series) -> list:
    """Values with every kind of missing as None."""
    return [None if pd.isna(value) else value for value in series.astype(object).tolist()]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    columns=st.lists(chunked_column(), min_size=1, max_size=3),
    fmt=st.sampled_from(FORMATS),
    pieces=st.integers(1, 3),
)
def test_every_format_reads_back_exactly_what_was_written(tmp_path_factory, columns, fmt, pieces):
    size = min(len(values) for values, _ in columns)
    frame = pd.DataFrame(
        {f"c{i}": col.iloc[:size].reset_index(drop=True) for i, (_, col) in enumerate(columns)}
    )
    frame["row"] = range(size)
    path = tmp_path_factory.mktemp("w") / f"out.{fmt}"
    write(frame, path, fmt, pieces)
    back = open_table(path).read()
    assert list(back.columns) == list(frame.columns)
    assert len(back) == size
    for i, (values, _) in enumerate(columns):
        assert as_list(back[f"c{i}"]) == values[:size]
    assert [int(v) for v in back["row"]] == list(range(size))


def test_an_empty_first_chunk_is_not_written_as_memory(tmp_path):
    """What dupq-find's frame looked like: a large_string column whose first chunk is empty
    (Arrow's CSV writer without a header wrote some 8 KB of raw memory for it)."""
    text = pa.large_string()
    ids = pa.chunked_array([pa.array([], text), pa.array(["q1", "q,2"], text)])
    frame = pd.DataFrame({"n": [1, 2], "bank_id": pd.arrays.ArrowExtensionArray(ids)})
    for fmt in FORMATS:
        path = tmp_path / f"m.{fmt}"
        write(frame, path, fmt)
        if fmt != "parquet":
            assert b"\0" not in path.read_bytes()
        assert open_table(path).read()["bank_id"].tolist() == ["q1", "q,2"]


def test_concat_rows_leaves_out_empty_frames():
    empty = pd.DataFrame({"a": pd.array([], dtype="string")})
    full = pd.DataFrame({"a": pd.array(["x", "y"], dtype="string")})
    assert concat_rows([empty, full, empty])["a"].tolist() == ["x", "y"]
    assert len(concat_rows([empty, empty])) == 0 and list(concat_rows([empty]).columns) == ["a"]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_quoted_empty_text_and_a_missing_cell_stay_apart(tmp_path, fmt):
    frame = pd.DataFrame({"a": pd.array(["", None, "x"], dtype="string"), "b": [1, 2, 3]})
    write(frame, tmp_path / f"e.{fmt}", fmt)
    assert as_list(open_table(tmp_path / f"e.{fmt}").read()["a"]) == ["", None, "x"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_column_of_mixed_types_in_one_chunk_is_written_faithfully(tmp_path, fmt):
    frame = pd.DataFrame({"level": pd.Series([1, "high", 2.5, None], dtype=object), "n": range(4)})
    write(frame, tmp_path / f"mixed.{fmt}", fmt)
    back = open_table(tmp_path / f"mixed.{fmt}").read()
    assert [None if pd.isna(v) else str(v) for v in back["level"]] == ["1", "high", "2.5", None]
