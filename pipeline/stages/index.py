"""Stage `index`: a FAISS index over a bank of known questions, for `dupq-find`.

Reads params `index` (bank, re-ranking model, FAISS and re-ranker settings), the processed
splits and the re-ranking bundle; trains the learned re-ranker (`index.rerank: learned`) on
the train split's retrieved candidates; writes models/index/ (index.faiss, bank.parquet, the
re-ranker's files, index.json with the sha256 of each file and of the text model it was built
with) and metrics/index.json: recall@k and MRR of the test split's known duplicates with every
question of every split in the bank, before and after re-ranking, against exact search with
the same vectors, and the precision of the top hit's `duplicate` flag.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from pipeline.bundle import load_bundle
from pipeline.find.evaluate import evaluate_retrieval
from pipeline.find.index import INDEX, QuestionIndex, read_questions
from pipeline.find.rerank import fit_reranker
from pipeline.io import write_json
from pipeline.stages._cli import ALL, run_stage

log = logging.getLogger("index")
READS = {INDEX: ALL}
SPLITS = ("train", "val", "test")


def run(params: dict) -> dict:
    cfg, paths = params["index"], params["paths"]
    processed = Path(paths["processed"])
    bundle = load_bundle(Path(paths["models"]) / cfg["model"])
    splits = {name: pd.read_parquet(processed / f"{name}.parquet") for name in SPLITS}
    if cfg["questions"] is None:
        train = splits["train"]
        questions = pd.concat([train["question1"], train["question2"]]).drop_duplicates()
        ids, source = None, f"{processed}/train.parquet"
    else:
        questions, ids = read_questions(cfg["questions"], cfg["question_col"], cfg["id_col"])
        source = cfg["questions"]
    reranker, reranker_info = None, None
    if cfg["rerank"] == "learned":
        reranker, reranker_info = fit_reranker(bundle, cfg, splits)
    start = time.perf_counter()
    metrics = evaluate_retrieval(bundle, cfg, splits, reranker=reranker)  # blend chosen on val
    evaluate_seconds = time.perf_counter() - start
    start = time.perf_counter()
    index = QuestionIndex.build(questions, ids, bundle, cfg, metrics["blend"], reranker)
    build_seconds = time.perf_counter() - start
    index.save(paths["index"])
    log.info(
        "wrote %s: %d questions from %s (%.1f s)",
        paths["index"],
        len(index.bank),
        source,
        build_seconds,
    )
    metrics.update(
        reranker=reranker_info,
        index_questions=len(index.bank),
        build_seconds=round(build_seconds, 2),
        evaluate_seconds=round(evaluate_seconds, 2),
        bytes_per_question=round(
            (Path(paths["index"]) / "index.faiss").stat().st_size / max(1, len(index.bank))
        ),
    )
    write_json(paths["index_metrics"], metrics)
    ranked = metrics.get("learned", metrics["reranked"])
    log.info(
        "recall@1 %.3f, recall@10 %.3f before re-ranking; %.3f, %.3f after (%s) -> %s",
        metrics["candidates"]["recall@1"],
        metrics["candidates"].get("recall@10", float("nan")),
        ranked["recall@1"],
        ranked.get("recall@10", float("nan")),
        "learned re-ranker" if reranker else f"blend with {cfg['model']}",
        paths["index_metrics"],
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    run_stage("index", __doc__.splitlines()[0], run, READS, argv)


if __name__ == "__main__":
    main()
