"""Benchmark: how fast `gbdt`'s pair features are computed, and which ones it uses.

Takes a trained `gbdt` bundle (bench/accuracy.py trains one on the real subset) and the real
subset's pairs. Times the per-question part (QuestionTable.build over the distinct questions)
and the per-pair part (pair_features) separately and together, on all the cores there are
(best of 3), and lists the model's features by total gain. Writes
reports/bench/pair_features.json. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
from datetime import date

import lightgbm as lgb
import numpy as np
import pandas as pd
from common import ROOT, SHARED_TSV, best_of, machine

from pipeline.bundle import Pairs, load_bundle
from pipeline.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="reports/bench/accuracy_run/random_glove/models/gbdt")
    parser.add_argument("--output", default="reports/bench/pair_features.json")
    args = parser.parse_args()
    bundle = load_bundle(ROOT / args.model)
    frame = pd.read_csv(SHARED_TSV, sep="\t", keep_default_na=False)
    pairs = Pairs.from_columns(frame["question1"], frame["question2"])
    pairs_ok = pairs.valid
    first, second = pairs.first[pairs_ok], pairs.second[pairs_ok]
    inputs = bundle.model_inputs(pairs.questions)

    rows, question_s = best_of(3, lambda: bundle.encode_questions(inputs))
    _, pair_s = best_of(3, lambda: bundle.raw_from_encodings(rows, first, second))
    booster = lgb.Booster(model_file=str(bundle.directory / bundle.meta["model_file"]))
    gains = booster.feature_importance("gain")
    order = np.argsort(-gains)
    importance = {booster.feature_name()[i]: round(float(gains[i]), 1) for i in order}
    result = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "pairs": int(len(first)),
        "distinct_questions": int(len(pairs.questions)),
        "per_question_seconds": round(question_s, 3),
        "per_pair_seconds": round(pair_s, 3),
        "pairs_per_s": round(len(first) / (question_s + pair_s)),
        "questions_per_s": round(len(pairs.questions) / question_s),
        "pair_part_pairs_per_s": round(len(first) / pair_s),
        "note": "pair_part includes LightGBM's prediction; pairs_per_s is both parts together",
        "importance_gain": importance,
    }
    write_json(ROOT / args.output, result)
    print(
        f"{result['pairs']:,} pairs, {result['distinct_questions']:,} distinct questions: "
        f"{result['questions_per_s']:,} questions/s, pair part {result['pair_part_pairs_per_s']:,}"
        f" pairs/s, together {result['pairs_per_s']:,} pairs/s"
    )
    for name, gain in importance.items():
        print(f"  {name:<24} {gain:>12,.0f}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
