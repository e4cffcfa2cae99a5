"""Download the official Quora release with a progress bar and a checksum.

A failed download never leaves a partial file behind.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import DownloadError
from pipeline.io import atomic_path

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def _manual_hint(url: str, dest: Path) -> str:
    return (
        f"Download {url} by hand and save it as {dest}, or point data.source at a local copy "
        "(Kaggle train.csv or the TSV), or run offline on the synthetic demo data: "
        "dvc exp run -S data.source=demo"
    )


def download(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 60) -> str:
    """Fetch `url` to `dest` through a temporary file; return the file's sha256.

    A network failure, a truncated transfer or a checksum mismatch raises DownloadError
    and leaves nothing at `dest`.
    """
    dest = Path(dest)
    log.info("downloading %s -> %s", url, dest)
    try:
        with atomic_path(dest) as tmp:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
                if total is not None and out.tell() != total:
                    raise DownloadError(f"connection dropped after {out.tell()} of {total} bytes")
            actual = digest.hexdigest()
            if sha256 and actual != sha256.lower():
                raise DownloadError(f"checksum mismatch: expected sha256 {sha256}, got {actual}")
    except DownloadError as err:
        raise DownloadError(f"download of {url} failed: {err}. {_manual_hint(url, dest)}") from None
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"download of {url} failed: {reason}. {_manual_hint(url, dest)}"
        ) from None
    log.info("downloaded %s (sha256 %s)", dest, actual)
    return actual
