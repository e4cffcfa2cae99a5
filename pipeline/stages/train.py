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
from pipeline.config import check_params, run_stage
from pipeline.errors import InputError
from pipeline.metrics import choose_threshold, classification_metrics
from pipeline.models import get_kind
from pipeline.models.base import fit_calibration, to_probability
from pipeline.text_model import TextModel, load_pairs

log = logging.getLogger("train")
# params.yaml sections read, checked first; `ensemble` too, so that a member the pipeline
# does not train stops the first model's training, not the ensemble's after every member
SECTIONS = ("data", "features", "train", "evaluate", "ensemble")


def run(params: dict, name: str) -> dict:
    check_params(params, (name,))  # before any work, also when called from Python
    kind = get_kind(name)
    train_cfg, cfg = params["train"], params[name]
    features_dir = Path(params["features"]["dir"])
    if not (features_dir / "text_model.json").is_file():
        raise InputError(
            f"{features_dir}: no features yet; run the features stage first (dvc repro features)"
        )
    text_model = TextModel.load(features_dir)
    processed_dir = params["data"]["processed_dir"]
    train = load_pairs(features_dir, processed_dir, "train", kind.reads)
    val = load_pairs(features_dir, processed_dir, "val", kind.reads)
    log.info(
        "read %s (%s): %d train / %d val pairs",
        features_dir,
        kind.reads,
        len(train["label"]),
        len(val["label"]),
    )
    fitted = kind.fit(cfg, train_cfg, text_model, train, val, Path(train_cfg["live_dir"]) / name)
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
    out = Path(train_cfg["models_dir"]) / name
    save_bundle(out, meta, text_model, kind, fitted.model)
    log.info("wrote bundle %s", out)
    return meta


def main(argv: list[str] | None = None) -> None:
    run_stage("train", __doc__.splitlines()[0], run, SECTIONS, argv, per_model=True)


if __name__ == "__main__":
    main()
