"""PNG charts that open anywhere, offline: a model's evaluation curves, its training curves, and
the comparison of all models. (dvclive's JSON plots need `dvc plots show`, whose HTML loads
Vega from a CDN.) Written atomically, with no timestamp inside, so a rerun on the same results
writes the same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import atomic_path

DPI = 100


def _figure(columns: int, title: str):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 3.8), squeeze=False)
    fig.suptitle(title)
    return fig, axes[0]


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def evaluation_png(
    path: str | Path, name: str, labels: np.ndarray, probs: np.ndarray, threshold: float
) -> None:
    """ROC, precision-recall and calibration curves of one model on the test split, the
    validation-chosen threshold marked on the first two."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, (roc, pr, calibration) = _figure(3, f"{name}: test split ({len(labels):,} pairs)")
    fpr, tpr, roc_cuts = roc_curve(labels, probs)
    roc.plot(fpr, tpr, label=f"AUC {auc(fpr, tpr):.3f}")
    roc.plot([0, 1], [0, 1], ":", color="grey")
    at = np.searchsorted(-roc_cuts, -threshold)  # roc_cuts run from high to low
    roc.plot(fpr[min(at, len(fpr) - 1)], tpr[min(at, len(tpr) - 1)], "o", label="threshold")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    precision, recall, pr_cuts = precision_recall_curve(labels, probs)
    pr.plot(recall, precision, label=f"AUC {auc(recall, precision):.3f}")
    at = min(np.searchsorted(pr_cuts, threshold), len(pr_cuts) - 1)
    pr.plot(recall[at], precision[at], "o", label="threshold")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    observed, predicted = calibration_curve(labels, probs, n_bins=10, strategy="quantile")
    calibration.plot(predicted, observed, "o-")
    calibration.plot([0, 1], [0, 1], ":", color="grey")
    calibration.set(xlabel="predicted P(duplicate)", ylabel="share of duplicates")
    calibration.set_title("Calibration (deciles)")
    for ax in (roc, pr):
        ax.legend(loc="lower right" if ax is roc else "lower left")
    _save(fig, path)


def training_png(path: str | Path, name: str, live_dir: str | Path) -> bool:
    """Each metric the model logged per epoch (per boosting round for gbdt) on the train and
    validation splits, from dvclive's files; False (nothing written) when it logged none."""
    metrics = Path(live_dir) / "plots" / "metrics"
    curves = {
        (split, file.stem): pd.read_csv(file, sep="\t")
        for split in ("train", "eval")
        for file in sorted((metrics / split).glob("*.tsv"))
    }
    shown = sorted({metric for _, metric in curves}, key=lambda m: (m != "loss", m))
    if not shown:
        return False
    fig, axes = _figure(len(shown), f"{name}: training")
    for ax, metric in zip(axes, shown, strict=True):
        for split, label in (("train", "train"), ("eval", "validation")):
            if (split, metric) in curves:
                table = curves[split, metric]
                ax.plot(table["step"] + 1, table[metric], ".-", label=label)
        ax.set(xlabel="epoch (gbdt: boosting round)", ylabel=metric, title=metric)
        ax.legend()
    _save(fig, path)
    return True


def comparison_png(path: str | Path, rows: dict[str, dict]) -> None:
    """Every model's test accuracy and ROC-AUC side by side, with the majority-class floor."""
    names = list(rows)
    fig, (accuracy, roc_auc) = _figure(2, "Models on the test split")
    y = np.arange(len(names))
    for ax, key, label in ((accuracy, "accuracy", "accuracy"), (roc_auc, "roc_auc", "ROC-AUC")):
        values = [rows[n].get(key) or 0.0 for n in names]
        ax.barh(y, values)
        for i, value in enumerate(values):
            ax.text(value, i, f" {value:.3f}", va="center", fontsize=8)
        ax.set(yticks=y, yticklabels=names, xlim=(0, 1.08), xlabel=label, title=label)
        ax.invert_yaxis()
    floor = rows[names[0]].get("majority_accuracy") if names else None
    if floor is not None:
        accuracy.axvline(floor, linestyle=":", color="grey")
        accuracy.set_title(f"accuracy (dotted: majority class, {floor:.3f})")
    _save(fig, path)
