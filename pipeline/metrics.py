"""Honest classification metrics, with the decision threshold chosen on validation data."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from pipeline.params import Choice, Section

EVALUATE = Section("evaluate", {"threshold_metric": Choice("accuracy", "f1")})

THRESHOLD_METRICS = ("accuracy", "f1")
# what every metrics/<model>.json holds, in the order reports show them
METRIC_KEYS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "roc_auc",
    "pr_auc",
    "threshold",
    "majority_accuracy",
)


def choose_threshold(
    labels: np.ndarray, probabilities: np.ndarray, metric: str = "accuracy"
) -> float:
    """The probability cut that maximizes `metric` on (validation) data.

    Every distinct probability is a candidate, evaluated at once from cumulative counts;
    the cut returned lies halfway between neighbouring probabilities.
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(
            f"evaluate.threshold_metric must be one of {THRESHOLD_METRICS}, got {metric!r}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-probs, kind="stable")
    probs, labels = probs[order], labels[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(probs)), len(probs) - 1]
    true_pos = np.cumsum(labels)[last_of_value]  # predicting positive for every p >= cut
    predicted_pos = last_of_value + 1
    positives = labels.sum()
    negatives = len(labels) - positives
    if metric == "accuracy":
        scores = true_pos + (negatives - (predicted_pos - true_pos))
        none_positive = negatives
    else:
        scores = 2 * true_pos / np.maximum(predicted_pos + positives, 1)
        none_positive = 0.0
    best = int(np.argmax(scores))
    if none_positive > scores[best]:
        return float(min(1.0, probs[0] + 1e-6))
    cut_value = probs[last_of_value[best]]
    below = probs[last_of_value[best] + 1] if last_of_value[best] + 1 < len(probs) else 0.0
    return float((cut_value + below) / 2)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    predicted = (probs >= threshold).astype(np.int64)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both_classes = len(np.unique(labels)) == 2
    return {
        "accuracy": float((predicted == labels).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "log_loss": float(log_loss(labels, probs, labels=[0, 1])),
        "roc_auc": float(roc_auc_score(labels, probs)) if both_classes else None,
        "pr_auc": float(average_precision_score(labels, probs)) if both_classes else None,
        "threshold": float(threshold),
        "majority_accuracy": float(max(labels.mean(), 1 - labels.mean())),
        "pairs": int(len(labels)),
    }


def blog_precision(labels: np.ndarray, distances: np.ndarray, cut: float = 0.5) -> float | None:
    """What the 2017 post called accuracy (`labels[dist < 0.5].mean()`): it is precision."""
    chosen = np.asarray(distances).ravel() < cut
    return float(np.asarray(labels)[chosen].mean()) if chosen.any() else None
