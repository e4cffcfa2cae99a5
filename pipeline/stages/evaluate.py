"""Stage `evaluate@<model>`: score the test split through the model's bundle.

The bundle predicts from raw question text, exactly as the scorer does. Reads the bundle and
data/processed/test.parquet; writes metrics/<model>.json (accuracy, precision, recall, F1,
log loss, ROC-AUC, PR-AUC at the validation-chosen threshold, the majority-class floor) and
ROC, precision-recall, confusion-matrix and calibration plots under reports/eval/<model>/.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.bundle import load_bundle
from pipeline.io import write_json
from pipeline.metrics import blog_precision, classification_metrics
from pipeline.models import TRAIN, get_kind, kind_names
from pipeline.plots import evaluation_png, training_png
from pipeline.stages._cli import run_stage

log = logging.getLogger("evaluate")
READS = {TRAIN: ("predict_batch",)}


def run(params: dict, name: str) -> dict:
    paths = params["paths"]
    bundle = load_bundle(Path(paths["models"]) / name)
    test_path = Path(paths["processed"]) / "test.parquet"
    test = pd.read_parquet(test_path)
    labels = test["is_duplicate"].to_numpy(np.int64)
    raw, probs = bundle.score(
        test["question1"], test["question2"], params["train"]["predict_batch"]
    )
    log.info("scored %d test pairs from %s with %s", len(test), test_path, bundle.directory)

    metrics = classification_metrics(labels, probs, bundle.threshold)
    if get_kind(name).output == "distance":  # the 2017 post's metric, under its real name
        metrics["blog_precision"] = blog_precision(labels, raw, 0.5)
    metrics.update(
        {
            key: bundle.meta[key]
            for key in ("train_seconds", "seconds_per_epoch", "epochs_run", "device")
        }
    )
    metrics["val_accuracy"] = bundle.meta["val_metrics"]["accuracy"]
    out = Path(paths["metrics"]) / f"{name}.json"
    write_json(out, metrics)
    log.info(
        "%s: test accuracy %.4f, F1 %.4f, ROC-AUC %s -> %s",
        name,
        metrics["accuracy"],
        metrics["f1"],
        metrics["roc_auc"],
        out,
    )
    plots = Path(paths["plots"]) / name
    write_plots(plots, labels, probs, bundle.threshold)
    evaluation_png(plots / "evaluation.png", name, labels, probs, bundle.threshold)
    log.info("wrote %s", plots / "evaluation.png")
    if training_png(plots / "training.png", name, Path(paths["live"]) / name):
        log.info("wrote %s", plots / "training.png")
    return metrics


def write_plots(directory: Path, labels: np.ndarray, probs: np.ndarray, threshold: float) -> None:
    from dvclive import Live

    probs = probs.astype(np.float64)  # dvclive writes these with the json module
    with Live(str(directory), dvcyaml=False, save_dvc_exp=False) as live:
        predicted = (probs >= threshold).astype(int)
        live.log_sklearn_plot("roc", labels, probs, name="roc.json")
        live.log_sklearn_plot("precision_recall", labels, probs, name="precision_recall.json")
        live.log_sklearn_plot("confusion_matrix", labels, predicted, name="confusion_matrix.json")
        live.log_sklearn_plot("calibration", labels, probs, name="calibration.json")
    log.info("wrote plots under %s/plots/sklearn", directory)


def main(argv: list[str] | None = None) -> None:
    run_stage("evaluate", __doc__.splitlines()[0], run, lambda model: READS, argv, kind_names())


if __name__ == "__main__":
    main()
