"""Stage `raw`: get the question pairs named by `data.source` into data/raw/.

`demo` generates synthetic pairs (offline), `quora` downloads the official release and checks
its sha256, a path copies that file. Reads params `data` (source, url, sha256) and `demo`;
writes the pairs and data/raw/source.json (origin, sha256, size). Local copies kept under
data/external/ are a dependency, so editing one re-runs the pipeline from here.
"""

from __future__ import annotations

import logging

from pipeline.config import run_stage
from pipeline.raw_data import fetch

log = logging.getLogger("raw")
SECTIONS = ("data", "demo")  # params.yaml sections read, checked first


def run(params: dict) -> dict:
    data = params["data"]
    return fetch(data, params["demo"], data["raw_dir"])


def main(argv: list[str] | None = None) -> None:
    run_stage("raw", __doc__.splitlines()[0], run, SECTIONS, argv)


if __name__ == "__main__":
    main()
