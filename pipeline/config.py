"""Read sections of params.yaml, the single place where every pipeline knob lives."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Load the whole params file (a missing file is a clear error, not a traceback)."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"error: params file {path} not found (run from the project root)")
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The argument parser every stage CLI shares: where params.yaml lives."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="params file (params.yaml)")
    return parser


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("gensim", "smart_open", "absl"):  # per-line chatter drowns the stage logs
        logging.getLogger(noisy).setLevel(logging.ERROR)


def model_stage_main(description: str, run, argv: list[str] | None = None) -> None:
    """CLI of the per-model stages (train@m, evaluate@m): `--model NAME [--params FILE]`."""
    from pipeline.models import kind_names

    parser = stage_parser(description)
    parser.add_argument("--model", required=True, choices=kind_names(), help="which model")
    args = parser.parse_args(argv)
    setup_logging()
    run(load_params(args.params), args.model)
