"""File I/O shared by every stage and the scorer: table formats, atomic writes, JSON."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}


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
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """Yield a staging directory beside `directory`; swap it into place only if the block
    succeeds, so a failed write leaves the old directory (a bundle, an index) as it was.

    The swap survives a kill at any instant: the old directory is renamed aside (a backup),
    the new one renamed in, and only then is the backup removed. A kill between the two
    renames leaves no `directory` but a complete backup, which `recover_directory` (run here
    and by every loader) renames back. Staging and backup names hold the host and process
    id, so later runs remove those that killed processes left behind.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(directory)
    prefix = f"{_temp_prefix(directory)}{os.getpid()}."
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=".staging", dir=directory.parent))
    backup = staging.with_name(f"{prefix}{time.time_ns()}.old")
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; give the usual directory mode
        _fault_point("staged")
        if directory.exists():
            os.replace(directory, backup)
            _fault_point("moved_old_aside")
        os.replace(staging, directory)
        _fault_point("moved_new_in")
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def recover_directory(directory: str | Path) -> None:
    """Undo what a killed `atomic_directory` left: when `directory` is missing but a killed
    process's backup of it is there, rename the newest backup back; then remove the staging
    directories and backups of processes on this host that are gone."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        return
    prefix = _temp_prefix(directory)
    left = []
    for candidate in directory.parent.glob(f"{glob.escape(prefix)}*"):
        pid = candidate.name[len(prefix) :].split(".", 1)[0]
        if candidate.is_dir() and pid.isdigit() and not _alive(int(pid)):
            left.append(candidate)
    backups = sorted((c for c in left if c.name.endswith(".old")), key=_backup_time)
    if backups and not directory.exists():
        os.replace(backups.pop(), directory)
        logging.getLogger(__name__).warning(
            "%s: restored from the backup a killed write left", directory
        )
    for stale in backups + [c for c in left if c.name.endswith(".staging")]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def exclusive_lock(target: str | Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on `target` (a file or directory that several processes
    read, modify and write) for the block. The lock file sits beside `target`, since a
    directory swap replaces the directory itself. Waiting longer than `timeout` seconds is
    an InputError naming the lock."""
    from filelock import FileLock, Timeout

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    try:
        with FileLock(lock_path, timeout=timeout):
            yield
    except Timeout:
        raise InputError(
            f"{target}: another process has held its lock ({lock_path}) for over "
            f"{timeout:g} s; try again when it is done"
        ) from None


def _backup_time(path: Path) -> int:
    stamp = path.name.rsplit(".", 2)[-2]
    return int(stamp) if stamp.isdigit() else 0


FAULT_ENV = "DUPQ_FAULT_AT"  # tests only: a step name of atomic_directory at which to die


def _fault_point(step: str) -> None:
    """Kill this process outright at `step` when the tests ask for it (fault injection)."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{socket.gethostname()}."


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    A failed or interrupted write leaves no partial file and keeps any existing `path`. The
    temporary file's name holds the host and process id, so that a run killed outright
    (SIGKILL) leaves a file that `remove_stale_temps` can prove dead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{_temp_prefix(path)}{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
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


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changed_files(directory: str | Path, recorded: dict[str, str]) -> list[str]:
    """The files of `recorded` (relative path -> sha256) that are missing from `directory`
    or whose sha256 differs now: the one check behind bundles, ensembles and indexes."""
    directory = Path(directory)
    return [
        name
        for name, digest in recorded.items()
        if not (directory / name).is_file() or sha256_of(directory / name) != digest
    ]


def file_hashes(directory: str | Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    directory = Path(directory)
    return {
        path.relative_to(directory).as_posix(): sha256_of(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove temporary files of earlier writes to `path` whose process on this host is gone;
    returns what was removed. A live process's file (or another host's) is never touched."""
    path = Path(path)
    prefix = _temp_prefix(path)
    removed = []
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = candidate.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def check_writable(output_path: str | Path) -> None:
    """Fail before any work if OUT cannot be written; remove temporary files that killed
    runs to the same OUT left behind."""
    output_path = Path(output_path)
    if output_path.is_dir():
        raise InputError(f"{output_path}: is a directory; give the output file's name")
    parent = output_path.parent
    while not parent.exists():  # atomic_path makes the missing directories
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{output_path}: cannot write in {parent} (not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{output_path}: cannot write in {parent} (permission denied)")
    if output_path.parent.exists():
        for stale in remove_stale_temps(output_path):
            logging.getLogger(__name__).info("removed %s, left by a killed run", stale)


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
