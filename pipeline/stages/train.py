"""Stage `train@<model>`: fit one model on the train split and save its scoring bundle.

Reads params `train`, `<model>`, `evaluate.threshold_metric`, and data/features; writes
models/<model>/ (the bundle) and per-epoch train/val loss and accuracy with dvclive under
dvclive/train/<model>/. Keras models run on a GPU when TensorFlow sees one. What the model
reads and how it is fitted comes from its kind (`pipeline.models`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.bundle import same_text_is_duplicate, save_bundle
from pipeline.errors import InputError
from pipeline.metrics import EVALUATE, choose_threshold, classification_metrics
from pipeline.models import TRAIN, get_kind, kind_names
from pipeline.models.base import FitDirs, fit_calibration, to_probability
from pipeline.stages._cli import ALL, run_stage
from pipeline.text_model import TextModel, load_pairs

log = logging.getLogger("train")
TRAINING = (
    "seed",
    "deterministic",
    "class_weight",
    "patience",
    "warmup_epochs",
    "lr_schedule",
    "weight_average_epochs",
    "mixed_precision",
    "distribute",
)


def check_ensemble(params: dict) -> None:
    """The ensemble's members must be trained models: checked before the first one trains, not
    after every member has."""
    get_kind("ensemble").check(params)


def reads(model: str) -> dict:
    """The settings training `model` reads: its own section, and the training settings (the
    ensemble stacks the trained models' predictions, so it reads which models are trained
    rather than how)."""
    own = {get_kind(model).section: ALL}
    if model == "ensemble":
        return {**own, TRAIN: ("models", "seed", "predict_batch"), EVALUATE: ("threshold_metric",)}
    return {**own, TRAIN: (*TRAINING, "predict_batch"), EVALUATE: ("threshold_metric",)}


def run(params: dict, name: str) -> dict:
    kind = get_kind(name)
    kind.check(params)  # before any work, also when called from Python
    train_cfg = {key: params["train"][key] for key in reads(name)[TRAIN]}
    cfg, paths = params[name], params["paths"]
    features_dir = Path(paths["features"])
    if not (features_dir / "text_model.json").is_file():
        raise InputError(
            f"{features_dir}: no features yet; run the features stage first (dvc repro features)"
        )
    text_model = TextModel.load(features_dir)
    processed_dir = paths["processed"]
    train = load_pairs(features_dir, processed_dir, "train", kind.reads)
    val = load_pairs(features_dir, processed_dir, "val", kind.reads)
    log.info(
        "read %s (%s): %d train / %d val pairs",
        features_dir,
        kind.reads,
        len(train["label"]),
        len(val["label"]),
    )
    dirs = FitDirs(live=Path(paths["live"]) / name, models=Path(paths["models"]))
    fitted = kind.fit(cfg, train_cfg, text_model, train, val, dirs)
    calibration = None
    if kind.output == "distance":
        calibration = fit_calibration(fitted.raw_val, val["label"])
    val_prob = same_text_is_duplicate(to_probability(fitted.raw_val, calibration), val["same_text"])
    metric = params["evaluate"]["threshold_metric"]
    threshold = choose_threshold(val["label"], val_prob, metric)
    val_metrics = classification_metrics(val["label"], val_prob, threshold)
    log.info(
        "%s: val accuracy %.4f at threshold %.3f (%s)",
        name,
        val_metrics["accuracy"],
        threshold,
        fitted.info["device"],
    )
    meta = {
        "name": name,
        "kind": name,
        "threshold": threshold,
        "calibration": calibration,
        "threshold_metric": metric,
        "params": cfg,
        "train_params": train_cfg,
        "val_metrics": val_metrics,
        **fitted.info,
    }
    out = Path(paths["models"]) / name
    save_bundle(out, meta, text_model, kind, fitted.model)
    log.info("wrote bundle %s", out)
    return meta


def main(argv: list[str] | None = None) -> None:
    doc = __doc__.splitlines()[0]
    run_stage("train", doc, run, reads, argv, kind_names(), checks=(check_ensemble,))


if __name__ == "__main__":
    main()
