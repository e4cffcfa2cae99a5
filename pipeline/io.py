"""File I/O shared by every stage and the scorer: table formats, atomic writes, JSON."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}


class InputError(Exception):
    """A problem with a file the user gave: the message names the file and what is wrong."""


def table_format(path: str | Path, explicit: str | None = None) -> str:
    """The table format of `path`, from `explicit` or the file extension."""
    if explicit:
        if explicit not in FORMATS.values():
            raise InputError(
                f"{path}: unknown format {explicit!r} (use one of {sorted(FORMATS.values())})"
            )
        return explicit
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{path}: unknown file extension {suffix or '(none)'!r} "
            f"(expected one of {', '.join(FORMATS)})"
        )
    return FORMATS[suffix]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    A failed or interrupted write leaves no partial file and keeps any existing `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """np.savez without pickled objects, written atomically."""
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def first_bad_utf8_line(path: str | Path) -> tuple[int, str]:
    """Line number (1-based) and reason of the first line that is not valid UTF-8."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return (
                    number,
                    f"invalid UTF-8 byte 0x{raw[err.start]:02x} at column {err.start + 1}",
                )
    return 0, "invalid UTF-8"
