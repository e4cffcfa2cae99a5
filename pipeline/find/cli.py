"""dupq-find: look up questions in the index, or add questions to it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from pipeline.bundle import load_bundle, project_bundle
from pipeline.errors import run_cli
from pipeline.find.index import QuestionIndex, read_questions
from pipeline.find.search import open_finder
from pipeline.io import atomic_path, check_writable, exclusive_lock, table_format
from pipeline.params import project_setting
from pipeline.tables import ChunkWriter

LOCK_TIMEOUT = 600.0  # seconds an --add waits for another writer of the same index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dupq-find", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--index",
        default=project_setting("paths", "index", "models/index"),
        help="question index directory (default: the project's paths.index, %(default)s)",
    )
    parser.add_argument(
        "--model", help="re-ranking bundle (default: the one the index was built with)"
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="one question")
    what.add_argument("--input", help="questions to look up: .csv .tsv .parquet .jsonl")
    what.add_argument("--add", help="questions to add to the index: .csv .tsv .parquet .jsonl")
    parser.add_argument("--output", help="where --input's matches go (default: stdout for --query)")
    parser.add_argument("--question-col", default="question")
    parser.add_argument("--id-col", default=None, help="--add: a column of bank ids")
    parser.add_argument(
        "--top-k",
        type=int,
        default=project_setting("index", "top_k", 10),
        help="matches per question (default: the project's index.top_k, %(default)s)",
    )
    parser.add_argument("--candidates", type=int, default=None, help="neighbours re-ranked")
    args = parser.parse_args(argv)
    if args.input and not args.output:
        parser.error("--input needs --output")
    if args.top_k < 1 or (args.candidates is not None and args.candidates < 1):
        parser.error("--top-k and --candidates must be 1 or more")
    return run_cli("dupq-find", lambda: _run(args), "nothing written")


def _run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    if args.add:
        questions, ids = read_questions(args.add, args.question_col, args.id_col)
        with exclusive_lock(args.index, LOCK_TIMEOUT):  # read, add, write: one at a time
            model = project_bundle(args.model) if args.model else None
            bundle = load_bundle(model or QuestionIndex.read_meta(args.index)["model"])
            index = QuestionIndex.load(args.index, bundle)
            counts = index.add(questions, ids, bundle)
            index.save(args.index)
        skipped = ", ".join(f"{n} {why}" for why, n in counts.items() if why != "added" and n)
        print(
            f"dupq-find: added {counts['added']} of {len(questions)} questions; "
            f"{len(index.bank)} in {args.index}" + (f" (skipped: {skipped})" if skipped else ""),
            file=sys.stderr,
        )
        return 0
    if args.query is not None:
        queries = pd.Series([args.query])
    else:  # the input and the output are checked before the index and the model load
        queries = read_questions(args.input, args.question_col)[0]
    output_fmt = table_format(args.output) if args.output else None
    if args.output:
        check_writable(Path(args.output))
    model = project_bundle(args.model) if args.model else None
    finder = open_finder(args.index, model, args.candidates)
    matches = finder.find(queries, args.top_k)
    if not args.output:
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(matches.drop(columns=["query_row", "query"]).to_string(index=False))
        return 0
    with atomic_path(args.output) as tmp:
        writer = ChunkWriter(tmp, output_fmt)
        try:
            writer.write(matches)
        finally:
            writer.close()
    print(
        f"dupq-find: {len(queries)} queries -> {args.output}: {len(matches)} rows", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
