"""What every model kind tells the pipeline, and the Keras training shared by the Keras kinds.

A kind says which per-question input it reads (`reads`), how it is fitted on the features
stage's arrays, how it is saved in and loaded from a bundle, and how it scores: a
per-question part run once per distinct question and a per-pair part run on the encodings of a
pair's two questions. A kind whose raw output is a distance (small = duplicate) gets a
logistic calibration fitted on validation pairs, which turns it into a probability.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("train")


@dataclass
class ScoringParts:
    """A loaded model as the scorer uses it.

    per_question(inputs, batch_size) -> one encoding per question (None: the inputs are the
    encodings); per_pair(enc_a, enc_b) -> the model's raw output per pair, the encodings being
    anything indexable by question number (an array, a sparse matrix, a table). `model` is the whole
    trained Keras model (None for other kinds).
    """

    model: object
    per_question: Callable | None
    per_pair: Callable


@dataclass
class Fitted:
    model: object  # what `ModelKind.save` writes
    raw_val: np.ndarray  # the model's raw output on the validation pairs
    info: dict  # device, train_seconds, epochs_run, seconds_per_epoch


class ModelKind:
    """One kind of model. Subclasses fill in fitting, saving and loading."""

    name: str
    reads: str  # "embeddings" | "token_ids" | "tfidf" | "text" (TextModel.question_inputs)
    output: str = "probability"  # or "distance", calibrated into a probability
    model_file: str  # the bundle file holding the fitted model
    param_fields: dict  # its params.yaml section: key -> pipeline.config field type

    def check_params(self, section: dict, params: dict) -> None:
        """Checks that span sections (config checks the section's own keys and types)."""

    def fit(
        self, params: dict, train_cfg: dict, text_model, train: dict, val: dict, live_dir: Path
    ) -> Fitted:
        raise NotImplementedError

    def save(self, model, directory: Path) -> dict:
        """Write the fitted model into a bundle directory; returns facts for bundle.json."""
        raise NotImplementedError

    def load(self, directory: Path) -> ScoringParts:
        raise NotImplementedError


# -- raw output -> probability -------------------------------------------------------------
def fit_calibration(raw: np.ndarray, labels: np.ndarray) -> dict:
    """Monotone map raw output -> P(duplicate): logistic regression on validation pairs."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression().fit(np.asarray(raw).reshape(-1, 1), labels)
    return {"coef": float(fit.coef_[0, 0]), "intercept": float(fit.intercept_[0])}


def to_probability(raw: np.ndarray, calibration: dict | None) -> np.ndarray:
    if calibration is None:
        return np.asarray(raw, dtype=np.float32)
    return sigmoid(calibration["coef"] * np.asarray(raw) + calibration["intercept"])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


# -- Keras kinds ---------------------------------------------------------------------------
class KerasKind(ModelKind):
    """A Keras model `head([encoder(q1), encoder(q2)])`, saved as model.keras (safe mode)."""

    model_file = "model.keras"

    def __init__(
        self,
        name: str,
        reads: str,
        build: Callable,
        param_fields: dict,
        output: str = "probability",
    ):
        self.name, self.reads, self._build, self.output = name, reads, build, output
        self.param_fields = param_fields

    def build(self, params: dict, text_model):
        """The compiled Keras model for these params (checked first) and this text model."""
        from pipeline.config import check_section

        check_section(self.name, params, self.param_fields)
        return self._build(params, text_model)

    def fit(self, params, train_cfg, text_model, train, val, live_dir) -> Fitted:
        import keras
        from dvclive.keras import DVCLiveCallback

        from dvclive import Live

        strategy, device = configure_tensorflow(train_cfg)
        log.info("training %s on %s", self.name, device)
        with strategy.scope():
            model = self.build(params, text_model)
        callbacks = [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=train_cfg["patience"], restore_best_weights=True
            ),
            DVCLiveCallback(live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)),
        ]
        start = time.perf_counter()
        history = model.fit(
            {"q1": train["q1"], "q2": train["q2"]},
            train["label"].astype(np.float32),
            validation_data=({"q1": val["q1"], "q2": val["q2"]}, val["label"].astype(np.float32)),
            batch_size=params["batch_size"],
            epochs=params["epochs"],
            shuffle=True,
            class_weight=class_weights(train["label"], train_cfg["class_weight"]),
            callbacks=callbacks,
            verbose=2,
        )
        seconds = time.perf_counter() - start
        epochs_run = len(history.history["loss"])
        raw_val = model.predict(
            {"q1": val["q1"], "q2": val["q2"]}, batch_size=train_cfg["predict_batch"], verbose=0
        )
        info = {
            "device": device,
            "train_seconds": round(seconds, 2),
            "epochs_run": epochs_run,
            "seconds_per_epoch": round(seconds / max(epochs_run, 1), 2),
        }
        return Fitted(model, np.asarray(raw_val).ravel(), info)

    def save(self, model, directory: Path) -> dict:
        from pipeline.models.layers import scoring_parts

        model.save(directory / self.model_file)
        per_question, _ = scoring_parts(model)
        return {"encoding_floats": int(np.prod(per_question.output.shape[1:]))}

    def load(self, directory: Path) -> ScoringParts:
        import keras

        from pipeline.models.layers import scoring_parts

        model = keras.models.load_model(directory / self.model_file, safe_mode=True, compile=False)
        if not {"encoder", "head"} <= {layer.name for layer in model.layers}:
            raise ValueError("model.keras has no encoder and head parts (retrain it)")
        per_question, per_pair = scoring_parts(model)
        # the first two batch shapes each trace a graph; after that one graph fits every size
        for n in (1, 2):
            shape, dtype = per_question.input.shape[1:], per_question.input.dtype
            encoded = per_question.predict_on_batch(np.zeros((n, *shape), dtype=dtype))
            per_pair.predict_on_batch({"a": encoded, "b": encoded})
        return ScoringParts(
            model,
            lambda inputs, batch_size: in_batches(
                per_question.predict_on_batch, batch_size, inputs
            ),
            lambda a, b: per_pair.predict_on_batch({"a": a, "b": b}),
        )


def in_batches(predict, batch_size: int, *arrays, gather=None) -> np.ndarray:
    """`predict` over row batches of `arrays` (or of the `gather` rows they index), written
    into one output array as they come (no list of parts to concatenate: half the peak
    memory)."""
    out = None
    for start in range(0, len(arrays[0]), batch_size):
        batch = [a[start : start + batch_size] for a in arrays]
        if gather is not None:
            batch = [gather[rows] for rows in batch]
        result = np.asarray(predict(*batch))
        if out is None:
            out = np.empty((len(arrays[0]), *result.shape[1:]), dtype=np.float32)
        out[start : start + len(result)] = result
    return out


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
    if train_cfg["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    if train_cfg["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    gpus = tf.config.list_physical_devices("GPU")
    distribute = train_cfg["distribute"]  # none | mirrored, checked by pipeline.config
    if distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU x{len(gpus)} ({details.get('device_name', 'unknown')})"
    else:
        device = "CPU"
    if distribute == "mirrored":
        device += f", mirrored over {strategy.num_replicas_in_sync} replicas"
    return strategy, device
