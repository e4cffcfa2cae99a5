"""What every stage shares: the `paths` section, the CLI, and handing a stage only the params
it declares.

A stage declares the settings it reads as `{Section: keys}` (`ALL` for every key of the
section). `run_stage` checks those sections, then calls the stage with params holding exactly
the declared keys plus `paths`: a stage that reads a key it did not declare fails at once (a
KeyError in the tests), and a test checks that `dvc.yaml` lists exactly the declared keys, so
a changed setting can never leave a stage's outputs silently stale.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import ParamsError, UserError
from pipeline.params import Section, Text, read_params

DEFAULT_PARAMS = Path("params.yaml")
ALL = None  # a stage reads every key of the section
# every file the stages read and write (dvc.yaml names them as ${paths.<key>}), with the name
# each gets when all of them live in one directory (`paths_under`)
PATH_NAMES = {
    "raw": "raw",
    "processed": "processed",
    "data_report": "data.json",
    "vectors": "vectors.bin",
    "vectors_report": "vectors.json",
    "features": "features",
    "features_report": "features.json",
    "models": "models",
    "live": "live",
    "metrics": "metrics",
    "plots": "eval",
    "models_report": "models.md",
    "models_chart": "models.png",
    "index": "index",
    "index_metrics": "index.json",
    "behaviour_metrics": "behaviour.json",
}
PATHS = Section("paths", {key: Text() for key in PATH_NAMES})
Reads = dict[Section, tuple[str, ...] | None]


def paths_under(directory: str | Path) -> dict[str, str]:
    """A `paths` section with every file under one directory (tests, benchmarks)."""
    return {key: str(Path(directory) / name) for key, name in PATH_NAMES.items()}


def declared_keys(reads: Reads) -> dict[str, tuple[str, ...]]:
    """Section name -> the keys a stage reads."""
    return {
        section.name: tuple(section.fields) if keys is ALL else keys
        for section, keys in reads.items()
    }


def checked_params(params: dict, reads: Reads) -> dict:
    """`paths` and the declared keys, each section checked first."""
    for section in (PATHS, *reads):
        section.check(params)
    return {
        name: {key: params[name][key] for key in keys}
        for name, keys in declared_keys({PATHS: ALL, **reads}).items()
    }


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("gensim", "smart_open", "absl", "faiss"):  # per-line chatter drowns the logs
        logging.getLogger(noisy).setLevel(logging.ERROR)


def run_stage(
    stage: str,
    description: str,
    run: Callable,
    reads: Reads | Callable[[str], Reads],
    argv: list[str] | None = None,
    models: list[str] | None = None,
    checks: tuple[Callable[[dict], None], ...] = (),
) -> None:
    """The CLI every stage shares: `[--params FILE]`, and `--model NAME` for per-model stages,
    which pass the registry's `models` and `reads` as a function of the model's name.
    `checks` run on the whole params file first: a problem that would stop a later stage
    stops this one before it works for nothing (they read nothing it is handed).

    Params are checked before any work; a UserError (bad file, param or bundle) is one line
    on stderr and exit status 2, with no traceback.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m pipeline.stages.{stage}", description=description
    )
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="params file (params.yaml)")
    if models:
        parser.add_argument("--model", required=True, choices=models, help="which model")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        params = read_params(args.params)
        try:
            for check in checks:
                check(params)
            if models:
                run(checked_params(params, reads(args.model)), args.model)
            else:
                run(checked_params(params, reads))
        except ParamsError as err:
            raise ParamsError(f"{args.params}: {err}") from None
    except UserError as err:
        print(f"{stage}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
