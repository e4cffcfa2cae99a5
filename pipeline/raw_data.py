"""Raw question pairs: get them where `data.source` says (synthetic, the official release, a
local file) into one directory with a manifest, and read them back as a table.

The `raw` stage writes; `prepare` reads. The manifest (source.json) records where the file
came from and its sha256, so a changed source changes the stage's output and re-runs `prepare`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from pipeline import synthetic
from pipeline.download import download
from pipeline.io import (
    InputError,
    atomic_path,
    read_json,
    sha256_of,
    table_format,
    write_json,
    write_parquet,
)
from pipeline.params import Bool, Choice, Int, Optional, Section, Sha256, Text
from pipeline.tables import check_utf8, open_table

DATA = Section(
    "data",
    {
        "source": Text(),
        "url": Text(),
        "sha256": Optional(Sha256()),
        "expected_rows": Optional(Int()),
        "min_chars": Int(0),
        "invalid_labels": Choice("error", "drop"),
        "encoding_errors": Choice("strict", "replace"),
        "drop_duplicate_pairs": Bool(),
    },
)

log = logging.getLogger("raw_data")
MANIFEST = "source.json"
RELEASE_FILE = "quora_duplicate_questions.tsv"  # the official release is tab-separated
REQUIRED = ["question1", "question2", "is_duplicate"]


def fetch(data: dict, demo_params: dict, raw_dir: str | Path) -> dict:
    """Put the pairs named by data.source into `raw_dir` and write its manifest."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    source = str(data["source"])
    if source == "demo":
        path = raw_dir / "demo_pairs.parquet"
        write_parquet(path, synthetic.generate(**demo_params))
        origin, replaced = "demo (synthetic)", 0
    elif source == "quora":
        path = raw_dir / RELEASE_FILE
        download(data["url"], path, data["sha256"])
        origin = data["url"]
        replaced = as_utf8(path, path, data["encoding_errors"])
    else:
        given = Path(source)
        if not given.is_file():
            raise InputError(f"data.source {source}: file not found (or not a file)")
        table_format(given)  # an unknown extension fails here, before copying
        path = raw_dir / given.name
        replaced = as_utf8(given, path, data["encoding_errors"])
        origin = str(given)
    manifest = {
        "source": origin,
        "kind": source if source in ("demo", "quora") else "file",
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "lines_with_invalid_utf8_replaced": replaced,
    }
    write_json(raw_dir / MANIFEST, manifest)
    log.info("wrote %s (%d bytes from %s) and %s", path, manifest["bytes"], origin, MANIFEST)
    return manifest


def as_utf8(source: Path, dest: Path, errors: str) -> int:
    """Copy `source` to `dest` (they may be the same file), checking that a text file is
    UTF-8: invalid bytes are an error naming the line, or with `errors="replace"` become
    U+FFFD. Returns how many lines had invalid bytes."""
    try:
        if table_format(source) != "parquet":
            check_utf8(source)
    except InputError as err:
        if errors != "replace":
            raise InputError(f"{err}, or set data.encoding_errors: replace") from None
        return _replace_invalid_utf8(source, dest)
    if source != dest:
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
    return 0


def _replace_invalid_utf8(source: Path, dest: Path) -> int:
    bad_lines = 0
    with atomic_path(dest) as tmp, open(source, "rb") as raw:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            for line in raw:  # only a file with invalid bytes comes this way
                try:
                    out.write(line.decode("utf-8"))
                except UnicodeDecodeError:
                    bad_lines += 1
                    out.write(line.decode("utf-8", errors="replace"))
    log.warning("%s: replaced invalid UTF-8 on %d line(s)", source, bad_lines)
    return bad_lines


def read_manifest(raw_dir: str | Path) -> dict:
    path = Path(raw_dir) / MANIFEST
    if not path.exists():
        raise InputError(f"{path}: not found; run the raw stage first (dvc repro raw)")
    return read_json(path)


def read_pairs(path: str | Path) -> pd.DataFrame:
    """The pairs of a .tsv/.csv/.parquet/.jsonl file, read by the scorer's own reader
    (`pipeline.tables`), so a file is read by the same rules in training and scoring."""
    return open_table(path, required=REQUIRED).read()
