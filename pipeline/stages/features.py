"""Stage `features`: TF-IDF (fitted on train), TF-IDF-weighted question embeddings, token ids.

Reads params `text`, `features`, `augment`, the train and val splits and the word vectors;
writes, under data/features/: the fitted text model (vocabulary, idf, aligned vectors: JSON +
NPZ), the generated train pairs (`train_generated.parquet`, `pipeline.augment`; empty when
`augment.share` is 0), and for train and val `<split>.npz` (embeddings, token ids, labels) and
`<split>_tfidf.npz` (sparse TF-IDF rows), train's with the generated pairs after the real
ones; plus reports/features.json. The test split is not featurized here: `evaluate` scores its
raw text through the bundle, as the scorer does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from pipeline.augment import AUGMENT, generated_pairs
from pipeline.io import save_npz, write_json, write_parquet
from pipeline.stages._cli import ALL, run_stage
from pipeline.text import TEXT, TextConfig, canonical
from pipeline.text_model import FEATURES, GENERATED_FILE, TextModel, save_tfidf
from pipeline.word_vectors import load_vectors

log = logging.getLogger("features")
READS = {TEXT: ALL, FEATURES: ALL, AUGMENT: ALL}
SPLITS = ("train", "val")  # what training reads


def featurize_split(model: TextModel, frame: pd.DataFrame) -> tuple[dict, dict, dict]:
    """Dense arrays, sparse TF-IDF rows and report figures for one split."""
    q1, q2 = (canonical(frame[column], model.text) for column in ("question1", "question2"))
    arrays = {
        "label": frame["is_duplicate"].to_numpy(np.int8),
        # what every model scores as a duplicate: one question to the text core
        "same_text": pc.equal(q1, q2).to_numpy(zero_copy_only=False),
    }
    tfidf, report = {}, {}
    for side in ("q1", "q2"):
        tokens = model.tokens(frame[f"question{side[1]}"])
        emb, empty = model.embed(tokens)
        arrays[f"emb_{side}"] = emb
        arrays[f"ids_{side}"] = model.token_ids(tokens)
        tfidf[side] = model.tfidf(tokens)
        lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        report[f"{side}_without_known_word"] = int(empty.sum())
        report[f"{side}_truncated"] = int((lengths > model.max_len).sum())
    return arrays, tfidf, report


def run(params: dict) -> dict:
    cfg, paths = params["features"], params["paths"]
    processed, out_dir = Path(paths["processed"]), Path(paths["features"])
    frames = {s: pd.read_parquet(processed / f"{s}.parquet") for s in SPLITS}
    train_questions = pd.concat(
        [frames["train"]["question1"], frames["train"]["question2"]], ignore_index=True
    )
    word_vectors = load_vectors(paths["vectors"])
    model = TextModel.fit(
        train_questions,
        TextConfig.from_dict(params["text"]),
        word_vectors,
        min_df=cfg["min_df"],
        max_features=cfg["max_features"],
        weighting=cfg["weighting"],
        sublinear_tf=cfg["sublinear_tf"],
        max_len=cfg["max_len"],
        spelling=cfg["spelling"],
    )
    model.save(out_dir)
    log.info("text model: %d words, %d with vectors", len(model.vocab), int(model.known.sum()))
    augment = params["augment"]
    generated = generated_pairs(
        frames["train"],
        augment["recipes"],
        augment["share"],
        augment["seed"],
        key=lambda texts: canonical(texts, model.text),
        parser=augment["parser"],
    )
    write_parquet(out_dir / GENERATED_FILE, generated)
    log.info("wrote %s/%s (%d generated train pairs)", out_dir, GENERATED_FILE, len(generated))
    frames["train"] = pd.concat([frames["train"], generated], ignore_index=True)
    report = {
        "vocab_size": len(model.vocab),
        "words_with_vectors": int(model.known.sum()),
        "dim": model.dim,
        "weighting": model.weighting,
        "generated_train_pairs": {
            name: {"pairs": int(len(rows)), "duplicates": int(rows["is_duplicate"].sum())}
            for name, rows in generated.groupby("recipe", sort=True)
        },
    }
    for split, frame in frames.items():
        arrays, tfidf, split_report = featurize_split(model, frame)
        save_npz(out_dir / f"{split}.npz", **arrays)
        save_tfidf(out_dir / f"{split}_tfidf.npz", tfidf["q1"], tfidf["q2"])
        report[split] = {"pairs": len(frame), **split_report}
        log.info("wrote %s/%s.npz and %s_tfidf.npz (%d pairs)", out_dir, split, split, len(frame))
    write_json(paths["features_report"], report)
    log.info("wrote %s", paths["features_report"])
    return report


def main(argv: list[str] | None = None) -> None:
    run_stage("features", __doc__.splitlines()[0], run, READS, argv)


if __name__ == "__main__":
    main()
