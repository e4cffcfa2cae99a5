"""Stage `raw`: get the question pairs named by `data.source` into data/raw/.

`demo` generates synthetic pairs (offline), `quora` downloads the official release and checks
its sha256, a path copies that file. Reads params `data` (source, url, sha256) and `demo`;
writes the pairs and data/raw/source.json (origin, sha256, size). Local copies kept under
data/external/ are a dependency, so editing one re-runs the pipeline from here.
"""

from __future__ import annotations

import logging

from pipeline.config import load_params, setup_logging, stage_parser
from pipeline.download import DownloadError
from pipeline.io import InputError
from pipeline.raw_data import fetch

log = logging.getLogger("raw")


def run(params: dict) -> dict:
    data = params["data"]
    return fetch(data, params["demo"], data["raw_dir"])


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_logging()
    try:
        run(load_params(args.params))
    except (InputError, DownloadError) as err:
        raise SystemExit(f"raw: error: {err}") from None


if __name__ == "__main__":
    main()
