"""Stage `vectors`: train word vectors on the train split (GloVe, word2vec, fastText) or load
pretrained ones (a spaCy pipeline name, or a GloVe / word2vec / gensim file).

Reads params `text`, `vectors`; writes models/vectors/vectors.kv (gensim KeyedVectors) and
reports/vectors.json (vocabulary, OOV rates on val, training time, similarity/analogy scores).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from gensim.models import FastText, KeyedVectors, Word2Vec
from gensim.test.utils import datapath

from pipeline.io import write_json
from pipeline.stages._cli import ALL, run_stage
from pipeline.text import TEXT, TextConfig, tokenize
from pipeline.word_vectors import VECTORS, load_pretrained, save_vectors, vocabulary

log = logging.getLogger("vectors")
READS = {TEXT: ALL, VECTORS: ALL}


def split_tokens(processed_dir: str | Path, split: str, config: TextConfig) -> pa.ListArray:
    """Tokens of every question (both columns) of one split."""
    frame = pd.read_parquet(Path(processed_dir) / f"{split}.parquet")
    questions = pd.concat([frame["question1"], frame["question2"]], ignore_index=True)
    return tokenize(questions, config)


def train_glove_vectors(tokens: pa.ListArray, cfg: dict) -> KeyedVectors:
    from pipeline.glove import cooccurrence, train_glove

    words = vocabulary(tokens, cfg["min_count"])
    ids = pc.index_in(tokens.flatten(), value_set=pa.array(words, pa.string()))
    ids = ids.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    cooc = cooccurrence(ids, lengths, len(words), cfg["window"])
    log.info("glove: %d words, %d co-occurring pairs", len(words), cooc.nnz)
    vectors, losses = train_glove(
        cooc,
        cfg["dim"],
        cfg["epochs"],
        cfg["learning_rate"],
        cfg["batch_size"],
        cfg["x_max"],
        cfg["alpha"],
        cfg["seed"],
    )
    kv = KeyedVectors(cfg["dim"])
    kv.add_vectors(words, vectors)
    kv.glove_losses = losses
    return kv


def train_gensim_vectors(tokens: pa.ListArray, cfg: dict) -> KeyedVectors:
    """word2vec or fastText on the train questions (all cores unless vectors.workers says)."""
    sentences = [s for s in tokens.to_pylist() if s]
    common = dict(
        vector_size=cfg["dim"],
        window=cfg["window"],
        min_count=cfg["min_count"],
        epochs=cfg["epochs"],
        seed=cfg["seed"],
        sg=cfg["skip_gram"],
        workers=int(cfg.get("workers") or os.cpu_count() or 1),
    )
    if cfg["method"] == "word2vec":
        model = Word2Vec(sentences, **common)
    else:
        model = FastText(sentences, bucket=cfg["bucket"], **common)
    return model.wv


def oov_rates(kv: KeyedVectors, tokens: pa.ListArray) -> dict:
    known = pc.is_in(tokens.flatten(), value_set=pa.array(kv.index_to_key, pa.string()))
    known = known.to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    unknown_per_question = np.bincount(rows, weights=~known, minlength=len(lengths))
    known_per_question = np.bincount(rows, weights=known, minlength=len(lengths))
    return {
        "val_oov_token_rate": float(1 - known.mean()) if len(known) else 0.0,
        "val_questions_with_oov": float((unknown_per_question > 0).mean()),
        "val_questions_without_known_word": float((known_per_question == 0).mean()),
    }


def quality_scores(kv: KeyedVectors) -> dict:
    """Word similarity (WordSim353) and analogy accuracy, with how much of each was covered."""
    scores = {}
    try:
        pearson, spearman, oov_ratio = kv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    except ValueError:  # gensim's answer when no word pair of the set has vectors
        spearman, oov_ratio = (float("nan"),), 100.0
    scores["wordsim353_spearman"] = None if np.isnan(spearman[0]) else float(spearman[0])
    scores["wordsim353_coverage"] = float(1 - oov_ratio / 100)
    accuracy, sections = kv.evaluate_word_analogies(datapath("questions-words.txt"))
    total = next(s for s in sections if s["section"] == "Total accuracy")
    evaluated = len(total["correct"]) + len(total["incorrect"])
    scores["analogy_accuracy"] = float(accuracy) if evaluated else None
    scores["analogy_evaluated"] = evaluated
    return scores


def run(params: dict) -> dict:
    cfg, config = params["vectors"], TextConfig.from_dict(params["text"])
    processed = params["paths"]["processed"]
    train_tokens = split_tokens(processed, "train", config)
    val_tokens = split_tokens(processed, "val", config)
    start = time.perf_counter()
    info: dict = {"source": cfg["source"]}
    if cfg["source"] == "train":
        info["method"] = cfg["method"]
        if cfg["method"] == "glove":
            kv = train_glove_vectors(train_tokens, cfg)
            info["glove_loss_first_epoch"] = kv.glove_losses[0]
            info["glove_loss_last_epoch"] = kv.glove_losses[-1]
        else:  # word2vec | fasttext
            kv = train_gensim_vectors(train_tokens, cfg)
    else:  # pretrained: only words of the train split can carry weight downstream
        kv, source_info = load_pretrained(
            cfg["pretrained"], vocabulary(train_tokens), cfg["pretrained_format"]
        )
        info.update(source_info)
    info["seconds"] = round(time.perf_counter() - start, 2)
    info.update(vocab_size=len(kv), dim=int(kv.vector_size))
    info.update(oov_rates(kv, val_tokens))
    info.update(quality_scores(kv))

    out = Path(params["paths"]["vectors"])
    save_vectors(out, kv)
    log.info("wrote %s (%d words x %d)", out, len(kv), kv.vector_size)
    write_json(params["paths"]["vectors_report"], info)
    log.info("wrote %s", params["paths"]["vectors_report"])
    return info


def main(argv: list[str] | None = None) -> None:
    run_stage("vectors", __doc__.splitlines()[0], run, READS, argv)


if __name__ == "__main__":
    main()
