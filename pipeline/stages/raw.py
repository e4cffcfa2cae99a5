"""Stage `raw`: get the question pairs named by `data.source` into data/raw/.

`demo` generates synthetic pairs (offline), `quora` downloads the official release and checks
its sha256, a path copies that file. Reads params `data` (source, url, sha256) and `demo`;
writes the pairs and data/raw/source.json (origin, sha256, size). Local copies kept under
data/external/ are a dependency, so editing one re-runs the pipeline from here.
"""

from __future__ import annotations

import logging

from pipeline.raw_data import DATA, fetch
from pipeline.stages._cli import ALL, run_stage
from pipeline.synthetic import DEMO

log = logging.getLogger("raw")
READS = {DATA: ("source", "url", "sha256", "encoding_errors"), DEMO: ALL}


def run(params: dict) -> dict:
    return fetch(params["data"], params["demo"], params["paths"]["raw"])


def main(argv: list[str] | None = None) -> None:
    run_stage("raw", __doc__.splitlines()[0], run, READS, argv)


if __name__ == "__main__":
    main()
