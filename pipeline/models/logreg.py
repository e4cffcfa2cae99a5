"""`logreg`: logistic regression on TF-IDF pair features, the classical reference.

Features of a pair: [|a - b|, a * b] of the two L2-normalized TF-IDF rows (symmetric in the
two questions). Stored as plain coefficients (NPZ) and applied with one sparse product, so
scoring needs neither scikit-learn objects nor pickle.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from pipeline.io import load_npz, save_npz
from pipeline.models.base import (
    Fitted,
    ModelKind,
    ScoringParts,
    class_weights,
    sigmoid,
)
from pipeline.params import Int, Number


def pair_features(tfidf_q1: sp.csr_matrix, tfidf_q2: sp.csr_matrix) -> sp.csr_matrix:
    a, b = normalize(tfidf_q1), normalize(tfidf_q2)
    return sp.hstack([abs(a - b), a.multiply(b)], format="csr", dtype=np.float32)


def predict_proba(features: sp.csr_matrix, coef: np.ndarray, intercept: float) -> np.ndarray:
    return sigmoid(features @ coef + intercept)


class Logreg(ModelKind):
    name = "logreg"
    reads = "tfidf"
    model_file = "logreg.npz"

    param_fields = {"C": Number(), "max_iter": Int()}

    def fit(self, params, train_cfg, text_model, train, val, dirs) -> Fitted:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        from dvclive import Live

        start = time.perf_counter()
        train_x = pair_features(train["q1"], train["q2"])
        model = LogisticRegression(
            C=params["C"],
            max_iter=params["max_iter"],
            solver="liblinear",
            class_weight=class_weights(train["label"], train_cfg["class_weight"]),
            random_state=int(train_cfg["seed"]),
        ).fit(train_x, train["label"])
        coef, intercept = model.coef_.ravel().astype(np.float32), np.float32(model.intercept_[0])
        seconds = time.perf_counter() - start
        train_p = predict_proba(train_x, coef, intercept)
        val_p = predict_proba(pair_features(val["q1"], val["q2"]), coef, intercept)
        with Live(str(dirs.live), dvcyaml=False, save_dvc_exp=False) as live:  # one "epoch"
            for split, labels, probs in (
                ("train", train["label"], train_p),
                ("eval", val["label"], val_p),
            ):
                live.log_metric(f"{split}/loss", float(log_loss(labels, probs, labels=[0, 1])))
                live.log_metric(f"{split}/accuracy", float(((probs >= 0.5) == labels).mean()))
        info = {
            "device": "CPU (scikit-learn)",
            "train_seconds": round(seconds, 2),
            "epochs_run": 1,
            "seconds_per_epoch": round(seconds, 2),
        }
        return Fitted({"coef": coef, "intercept": intercept}, val_p, info)

    def save(self, model: dict, directory: Path, text_model) -> dict:
        save_npz(directory / self.model_file, **model)
        return {}

    def load(self, directory: Path) -> ScoringParts:
        arrays = load_npz(directory / self.model_file)
        coef, intercept = arrays["coef"], float(arrays["intercept"])
        return ScoringParts(
            None,
            None,  # a question's row is its TF-IDF row
            lambda a, b: predict_proba(pair_features(a, b), coef, intercept),
        )


KIND = Logreg()
