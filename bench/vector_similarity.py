"""Benchmark: why a model on question vectors trails one on words, by how alike the two vectors are.

`siamese` and `residual` see each question as one TF-IDF-weighted mean of its word vectors;
`birnn_cnn` reads each question's word vectors in order, but each question alone, with no
word-by-word comparison of the two; `logreg` sees which words the two questions share. Pairs
are put in bands by the cosine of their two mean vectors (the vector models' own inputs), and
each model's accuracy (at its own threshold) is reported per band: where the vectors are nearly
the same, only word identity can tell a duplicate from a pair that differs in a word or two.
Also the accuracy of that cosine alone, at its best threshold. On the validation (dev) split of
a scratch directory of bench/full_release.py, never the test split. Writes
reports/bench/vector_similarity.json. Not a test.
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import ROOT, machine

from pipeline.bundle import load_bundle
from pipeline.errors import BundleError
from pipeline.io import write_json
from pipeline.metrics import choose_threshold

FULL_RUN = ROOT / "reports" / "bench" / "full_release_run"


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; 0 where a row is all zeros (a question without a known word)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.zeros(len(a)), where=norms > 0)


def cosine_alone_accuracy(similarity: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy of `similarity >= t` at the t that the models' thresholds are chosen by
    (cosines mapped onto [0, 1] as probabilities are)."""
    as_probability = (similarity + 1) / 2
    return float(((as_probability >= choose_threshold(labels, as_probability)) == labels).mean())


def band_name(low: float, high: float) -> str:
    if high == np.inf:
        return f">= {low}"
    return f"< {high}" if low == -np.inf else f"{low}-{high}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(FULL_RUN), help="bench/full_release.py's scratch")
    parser.add_argument("--models", nargs="+", default=["logreg", "siamese", "residual"])
    parser.add_argument(
        "--bands", nargs="+", type=float, default=[0.99, 0.97, 0.95, 0.9], help="lower edges"
    )
    parser.add_argument("--output", default="reports/bench/vector_similarity.json")
    args = parser.parse_args()
    work = Path(args.work)
    dev_path = work / "processed" / "val.parquet"
    if not dev_path.exists():
        raise SystemExit(
            f"bench/vector_similarity.py: {dev_path} not found (bench/full_release.py's scratch)"
        )
    dev = pd.read_parquet(dev_path)
    labels = dev["is_duplicate"].to_numpy(np.int64)
    try:
        bundles = {name: load_bundle(work / "models" / name) for name in args.models}
    except BundleError as error:
        raise SystemExit(f"bench/vector_similarity.py: {error}") from None
    correct = {}
    for name, bundle in bundles.items():
        probability = bundle.predict_proba(dev["question1"], dev["question2"])
        correct[name] = (probability >= bundle.threshold) == labels
        print(f"{name}: dev accuracy {correct[name].mean():.4f}", flush=True)
    text_model = next(iter(bundles.values())).text_model
    vectors = [text_model.question_inputs(dev[q], "embeddings") for q in ("question1", "question2")]
    similarity = cosine(*map(np.asarray, vectors))
    edges = sorted(args.bands, reverse=True)
    bands = []
    for low, high in zip([*edges, -np.inf], [np.inf, *edges], strict=True):
        rows = (similarity >= low) & (similarity < high)
        if not rows.any():  # no accuracy to report
            continue
        bands.append(
            {
                "cosine": band_name(low, high),
                "share": round(float(rows.mean()), 4),
                "duplicates": round(float(labels[rows].mean()), 4),
                "accuracy": {
                    name: round(float(right[rows].mean()), 4) for name, right in correct.items()
                },
            }
        )
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "work": os.path.relpath(work.resolve(), ROOT),
        "seed": yaml.safe_load((work / "params.yaml").read_text())["train"]["seed"],
        "pairs": len(dev),
        "duplicates": round(float(labels.mean()), 4),
        "accuracy": {name: round(float(ok.mean()), 4) for name, ok in correct.items()},
        "cosine_alone_accuracy": round(cosine_alone_accuracy(similarity, labels), 4),
        "bands": bands,
    }
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
