"""Stage `train@<model>`: fit one model on the train split and save its scoring bundle.

Reads params `train`, `<model>`, `evaluate.threshold_metric`, and data/features; writes
models/<model>/ (the bundle) and per-epoch train/val loss and accuracy with dvclive under
dvclive/train/<model>/. Runs on a GPU when TensorFlow sees one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from pipeline.bundle import KINDS, save_bundle
from pipeline.features import load_split, load_tfidf
from pipeline.featurize import TextModel
from pipeline.metrics import choose_threshold, classification_metrics
from pipeline.params import model_stage_main

log = logging.getLogger("train")


def class_weights(labels: np.ndarray, setting) -> dict | None:
    """None, 'balanced', or an explicit {0: w0, 1: w1}."""
    if not setting:
        return None
    if setting == "balanced":
        counts = np.bincount(labels, minlength=2)
        return {k: float(len(labels) / (2 * counts[k])) for k in (0, 1)}
    return {int(k): float(v) for k, v in dict(setting).items()}


def configure_tensorflow(train_cfg: dict):
    """Seeds, precision and distribution strategy; returns (strategy, device description)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(train_cfg["seed"]))
    if train_cfg.get("deterministic", True):
        tf.config.experimental.enable_op_determinism()
    if train_cfg.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    gpus = tf.config.list_physical_devices("GPU")
    distribute = train_cfg.get("distribute", "none")
    if distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif distribute == "none":
        strategy = tf.distribute.get_strategy()
    else:
        raise ValueError(f"train.distribute must be none or mirrored, got {distribute!r}")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU x{len(gpus)} ({details.get('device_name', 'unknown')})"
    else:
        device = "CPU"
    if distribute == "mirrored":
        device += f", mirrored over {strategy.num_replicas_in_sync} replicas"
    return strategy, device


def build_model(name: str, cfg: dict, text_model: TextModel):
    from pipeline.models.birnn_cnn import build_birnn_cnn
    from pipeline.models.siamese import build_residual, build_siamese

    if name == "siamese":
        return build_siamese(cfg, text_model.dim)
    if name == "residual":
        return build_residual(cfg, text_model.dim)
    # rows 0 (padding) and 1 (out of vocabulary) start at zero; words follow in vocab order
    matrix = np.vstack([np.zeros((2, text_model.dim), np.float32), text_model.vectors])
    return build_birnn_cnn(cfg, matrix, text_model.max_len)


def model_inputs(name: str, arrays: dict) -> dict:
    prefix = "ids" if name == "birnn_cnn" else "emb"
    return {"q1": arrays[f"{prefix}_q1"], "q2": arrays[f"{prefix}_q2"]}


def train_keras(
    name: str, cfg: dict, train_cfg: dict, text_model: TextModel, train, val, live_dir: Path
):
    import keras
    from dvclive.keras import DVCLiveCallback

    from dvclive import Live

    strategy, device = configure_tensorflow(train_cfg)
    log.info("training %s on %s", name, device)
    with strategy.scope():
        model = build_model(name, cfg, text_model)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=train_cfg["patience"], restore_best_weights=True
        ),
        DVCLiveCallback(live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)),
    ]
    start = time.perf_counter()
    history = model.fit(
        model_inputs(name, train),
        train["label"].astype(np.float32),
        validation_data=(model_inputs(name, val), val["label"].astype(np.float32)),
        batch_size=cfg["batch_size"],
        epochs=cfg["epochs"],
        shuffle=True,
        class_weight=class_weights(train["label"], train_cfg.get("class_weight")),
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.perf_counter() - start
    epochs_run = len(history.history["loss"])
    raw_val = np.asarray(model.predict(model_inputs(name, val), batch_size=4096, verbose=0)).ravel()
    info = {
        "device": device,
        "train_seconds": round(seconds, 2),
        "epochs_run": epochs_run,
        "seconds_per_epoch": round(seconds / max(epochs_run, 1), 2),
    }
    return model, raw_val, info


def calibrate_distance(distances: np.ndarray, labels: np.ndarray) -> dict:
    """Monotone map distance -> P(duplicate): logistic regression fitted on validation pairs."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression().fit(distances.reshape(-1, 1), labels)
    return {"coef": float(fit.coef_[0, 0]), "intercept": float(fit.intercept_[0])}


def train_logreg(cfg: dict, train_cfg: dict, features_dir: Path, train, val, live_dir: Path):
    from sklearn.metrics import log_loss

    from dvclive import Live
    from pipeline.models import logreg

    start = time.perf_counter()
    train_x = logreg.pair_features(*load_tfidf(features_dir / "train_tfidf.npz"))
    val_x = logreg.pair_features(*load_tfidf(features_dir / "val_tfidf.npz"))
    coef, intercept = logreg.fit(
        train_x,
        train["label"],
        cfg,
        class_weights(train["label"], train_cfg.get("class_weight")),
        int(train_cfg["seed"]),
    )
    seconds = time.perf_counter() - start
    train_p = logreg.predict_proba(train_x, coef, intercept)
    val_p = logreg.predict_proba(val_x, coef, intercept)
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:  # one "epoch"
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
    return {"coef": coef, "intercept": np.float32(intercept)}, val_p, info


def run(params: dict, name: str) -> dict:
    if name not in KINDS:
        raise SystemExit(f"train: error: unknown model {name!r} (choose from {', '.join(KINDS)})")
    train_cfg, cfg = params["train"], params[name]
    features_dir = Path(params["features"]["dir"])
    text_model = TextModel.load(features_dir)
    train, val = load_split(features_dir, "train"), load_split(features_dir, "val")
    live_dir = Path(train_cfg["live_dir"]) / name
    log.info(
        "read %s: %d train / %d val pairs", features_dir, len(train["label"]), len(val["label"])
    )

    keras_model, logreg_arrays, calibration = None, None, None
    if name == "logreg":
        logreg_arrays, val_prob, info = train_logreg(
            cfg, train_cfg, features_dir, train, val, live_dir
        )
    else:
        keras_model, raw_val, info = train_keras(
            name, cfg, train_cfg, text_model, train, val, live_dir
        )
        if name == "siamese":
            calibration = calibrate_distance(raw_val, val["label"])
            val_prob = 1 / (1 + np.exp(-(calibration["coef"] * raw_val + calibration["intercept"])))
        else:
            val_prob = raw_val
    threshold = choose_threshold(val["label"], val_prob, params["evaluate"]["threshold_metric"])
    val_metrics = classification_metrics(val["label"], val_prob, threshold)
    log.info(
        "%s: val accuracy %.4f at threshold %.3f (%s)",
        name,
        val_metrics["accuracy"],
        threshold,
        info["device"],
    )
    meta = {
        "name": name,
        "kind": name,
        "threshold": threshold,
        "calibration": calibration,
        "threshold_metric": params["evaluate"]["threshold_metric"],
        "params": cfg,
        "train_params": train_cfg,
        "val_metrics": val_metrics,
        **info,
    }
    out = Path(train_cfg["models_dir"]) / name
    save_bundle(out, meta, text_model, keras_model=keras_model, logreg=logreg_arrays)
    log.info("wrote bundle %s", out)
    return meta


def main(argv: list[str] | None = None) -> None:
    model_stage_main(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    main()
