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
from pipeline.download import download, sha256_of
from pipeline.io import (
    InputError,
    atomic_path,
    first_bad_utf8_line,
    read_json,
    table_format,
    write_json,
    write_parquet,
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
        origin = "demo (synthetic)"
    elif source == "quora":
        path = raw_dir / RELEASE_FILE
        download(data["url"], path, data.get("sha256"))
        origin = data["url"]
    else:
        given = Path(source)
        if not given.is_file():
            raise InputError(f"data.source {source}: file not found (or not a file)")
        table_format(given)  # an unknown extension fails here, before copying
        path = raw_dir / given.name
        with atomic_path(path) as tmp:
            shutil.copyfile(given, tmp)
        origin = str(given)
    manifest = {
        "source": origin,
        "kind": source if source in ("demo", "quora") else "file",
        "file": path.name,
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
    }
    write_json(raw_dir / MANIFEST, manifest)
    log.info("wrote %s (%d bytes from %s) and %s", path, manifest["bytes"], origin, MANIFEST)
    return manifest


def read_manifest(raw_dir: str | Path) -> dict:
    path = Path(raw_dir) / MANIFEST
    if not path.exists():
        raise InputError(f"{path}: not found; run the raw stage first (dvc repro raw)")
    return read_json(path)


def read_pairs(path: str | Path, encoding_errors: str = "strict") -> pd.DataFrame:
    """Read a .tsv/.csv/.parquet/.jsonl of pairs as strings, keeping quoted newlines.

    Only empty fields count as missing (a question reading "NA" or "null" is text).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, encoding_errors=encoding_errors)
        else:
            frame = pd.read_csv(
                path,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8-sig",
                encoding_errors=encoding_errors,
            )
    except UnicodeDecodeError:
        line, reason = first_bad_utf8_line(path)
        raise InputError(
            f"{path}: line {line}: {reason}; fix the file or set data.encoding_errors: replace"
        ) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise InputError(f"{path}: cannot parse as {fmt}: {err}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, frame.columns))}"
        )
    return frame
