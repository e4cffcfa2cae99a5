"""`gbdt`: LightGBM on hand-made pair features (`pipeline.pair_features`).

The features come from each pair's own text (TF-IDF and character n-gram cosines, shared-word
shares, fuzzy ratios, lengths, question words, numbers, embedding and word-to-word
similarities); none measures how the data set was sampled. Training stops early on the
validation split's log loss. The bundle holds LightGBM's own text model format (gbdt.txt, no
pickle) and the character n-gram idf (gbdt_chars.npz); the feature names and their order are
checked at load.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import load_npz, save_npz
from pipeline.models.base import (
    Fitted,
    ModelKind,
    ScoringParts,
)
from pipeline.pair_features import (
    FEATURE_NAMES,
    QuestionTable,
    fit_char_idf,
    pair_features,
    unit_word_vectors,
)
from pipeline.params import Fraction, Int, Number
from pipeline.text_model import TextModel

CHARS_FILE = "gbdt_chars.npz"


def features_of_pairs(q1, q2, text_model: TextModel, char_idf: np.ndarray) -> np.ndarray:
    """Pair features of two aligned columns of questions, each distinct question featurized
    once, through the scorer's own `Pairs`."""
    from pipeline.bundle import Pairs

    pairs = Pairs.from_columns(q1, q2, text_model.text)
    table = QuestionTable.build(pairs.questions, text_model, char_idf)
    return pair_features(table[pairs.first], table[pairs.second], unit_word_vectors(text_model))


class Gbdt(ModelKind):
    name = "gbdt"
    reads = "text"
    model_file = "gbdt.txt"

    param_fields = {
        "learning_rate": Number(),
        "num_leaves": Int(2),
        "min_child_samples": Int(),
        "feature_fraction": Fraction(),  # 0: every feature
        "bagging_fraction": Fraction(),  # 0: every pair
        "lambda_l2": Number(open_low=False),
        "max_rounds": Int(),
        "early_stopping_rounds": Int(),
    }

    def fit(self, params, train_cfg, text_model, train, val, dirs) -> Fitted:
        import lightgbm as lgb
        from dvclive.lgbm import DVCLiveCallback

        from dvclive import Live

        start = time.perf_counter()
        train_questions = pd.concat([train["q1"], train["q2"]], ignore_index=True).unique()
        char_idf = fit_char_idf(pd.Series(train_questions, dtype="string"), text_model)
        x_train = features_of_pairs(train["q1"], train["q2"], text_model, char_idf)
        x_val = features_of_pairs(val["q1"], val["q2"], text_model, char_idf)
        feature_seconds = time.perf_counter() - start
        settings = {
            "objective": "binary",
            "metric": "binary_logloss",  # early stopping watches this one only
            "learning_rate": params["learning_rate"],
            "num_leaves": params["num_leaves"],
            "min_child_samples": params["min_child_samples"],
            "feature_fraction": params["feature_fraction"] or 1.0,
            "bagging_fraction": params["bagging_fraction"] or 1.0,
            "bagging_freq": 1 if params["bagging_fraction"] else 0,
            "lambda_l2": params["lambda_l2"],
            "seed": int(train_cfg["seed"]),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        names = list(FEATURE_NAMES)
        train_set = lgb.Dataset(x_train, train["label"], feature_name=names)
        val_set = lgb.Dataset(x_val, val["label"], feature_name=names, reference=train_set)
        with Live(str(dirs.live), dvcyaml=False, save_dvc_exp=False) as live:
            booster = lgb.train(
                settings,
                train_set,
                num_boost_round=params["max_rounds"],
                valid_sets=[train_set, val_set],
                valid_names=["train", "eval"],
                callbacks=[
                    lgb.early_stopping(params["early_stopping_rounds"], verbose=False),
                    DVCLiveCallback(live=live),
                ],
            )
        seconds = time.perf_counter() - start
        raw_val = booster.predict(x_val, num_iteration=booster.best_iteration)
        info = {
            "device": "CPU (LightGBM)",
            "train_seconds": round(seconds, 2),
            "feature_seconds": round(feature_seconds, 2),
            "epochs_run": int(booster.best_iteration or booster.current_iteration()),
            "seconds_per_epoch": round(seconds / max(booster.current_iteration(), 1), 4),
        }
        return Fitted({"booster": booster, "char_idf": char_idf}, np.asarray(raw_val), info)

    def save(self, model: dict, directory: Path, text_model) -> dict:
        booster = model["booster"]
        booster.save_model(str(directory / self.model_file), num_iteration=booster.best_iteration)
        save_npz(directory / CHARS_FILE, idf=model["char_idf"])
        return {"features": list(FEATURE_NAMES)}

    def load(self, directory: Path) -> ScoringParts:
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_file=str(directory / self.model_file))
        except lgb.basic.LightGBMError as err:  # a damaged or truncated model file
            raise ValueError(f"{self.model_file}: not a LightGBM model ({err})") from None
        if booster.feature_name() != list(FEATURE_NAMES):
            raise ValueError(
                f"{self.model_file} was trained on features {booster.feature_name()}; this "
                f"dupq computes {list(FEATURE_NAMES)} (retrain the model)"
            )
        text_model = TextModel.load(directory)
        char_idf = load_npz(directory / CHARS_FILE)["idf"]
        unit = unit_word_vectors(text_model)
        return ScoringParts(
            None,  # no Keras model
            lambda questions, batch_size: QuestionTable.build(questions, text_model, char_idf),
            lambda a, b: booster.predict(pair_features(a, b, unit)),
        )


KIND = Gbdt()
