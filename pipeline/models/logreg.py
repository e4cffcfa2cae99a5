"""`logreg`: logistic regression on TF-IDF pair features, the classical reference.

Features of a pair: [|a - b|, a * b] of the two L2-normalized TF-IDF rows (symmetric in the
two questions). Stored as plain coefficients (NPZ) and applied with one sparse product, so
scoring needs neither scikit-learn objects nor pickle.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize


def pair_features(tfidf_q1: sp.csr_matrix, tfidf_q2: sp.csr_matrix) -> sp.csr_matrix:
    a, b = normalize(tfidf_q1), normalize(tfidf_q2)
    return sp.hstack([abs(a - b), a.multiply(b)], format="csr", dtype=np.float32)


def fit(features: sp.csr_matrix, labels: np.ndarray, params: dict, class_weight, seed: int):
    model = LogisticRegression(
        C=params["C"],
        max_iter=params["max_iter"],
        solver="liblinear",
        class_weight=class_weight,
        random_state=seed,
    )
    model.fit(features, labels)
    return model.coef_.ravel().astype(np.float32), np.float32(model.intercept_[0])


def predict_proba(features: sp.csr_matrix, coef: np.ndarray, intercept: float) -> np.ndarray:
    logits = features @ coef + intercept
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
