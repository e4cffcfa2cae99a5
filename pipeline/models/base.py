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

from pipeline.params import Section, check_section

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
class FitDirs:
    """Where a fit writes its training curves (dvclive), and where the trained bundles are
    (the ensemble reads its members there)."""

    live: Path
    models: Path


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
    param_fields: dict  # its params.yaml section: key -> pipeline.params field type

    @property
    def section(self) -> Section:
        """Its params.yaml section (named after the kind): keys and types only; `check` adds
        the checks that span sections."""
        return Section(self.name, self.param_fields)

    def check(self, params: dict) -> None:
        """Its section's keys and types, then the checks that span sections."""
        self.section.check(params)
        self.check_params(params[self.name], params)

    def check_params(self, section: dict, params: dict) -> None:
        """Checks that span sections (the section's own keys and types are checked first)."""

    def fit(
        self, params: dict, train_cfg: dict, text_model, train: dict, val: dict, dirs: FitDirs
    ) -> Fitted:
        raise NotImplementedError

    def save(self, model, directory: Path, text_model) -> dict:
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
        check_section(self.name, params, self.param_fields)
        return self._build(params, text_model)

    def fit(self, params, train_cfg, text_model, train, val, dirs) -> Fitted:
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
            DVCLiveCallback(live=Live(str(dirs.live), dvcyaml=False, save_dvc_exp=False)),
            *learning_rate_schedule(
                train_cfg["lr_schedule"], params["learning_rate"], params["epochs"]
            ),
        ]
        weights = class_weights(train["label"], train_cfg["class_weight"])
        if accepts_any_length(model):
            training = (length_buckets(train, params["batch_size"], weights, train_cfg["seed"]),)
            fit_args = {"shuffle": False}  # the buckets shuffle themselves
            log.info("batches of similar length, each cut to its longest question")
        else:
            training = ({"q1": train["q1"], "q2": train["q2"]}, train["label"].astype(np.float32))
            fit_args = {
                "batch_size": params["batch_size"],
                "shuffle": True,
                "class_weight": weights,
            }
        start = time.perf_counter()
        history = model.fit(
            *training,
            validation_data=({"q1": val["q1"], "q2": val["q2"]}, val["label"].astype(np.float32)),
            epochs=params["epochs"],
            callbacks=callbacks,
            verbose=2,
            **fit_args,
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

    def save(self, model, directory: Path, text_model) -> dict:
        from pipeline.models.layers import scoring_parts

        model.save(directory / self.model_file)
        per_question, _ = scoring_parts(model)
        # a model of any length scores questions padded to max_len
        shape = [text_model.max_len if n is None else n for n in per_question.output.shape[1:]]
        return {"encoding_floats": int(np.prod(shape))}

    def load(self, directory: Path) -> ScoringParts:
        import keras

        from pipeline.models.layers import scoring_parts

        model = keras.models.load_model(directory / self.model_file, safe_mode=True, compile=False)
        if not {"encoder", "head"} <= {layer.name for layer in model.layers}:
            raise ValueError("model.keras has no encoder and head parts (retrain it)")
        per_question, per_pair = scoring_parts(model)
        # the first two batch shapes each trace a graph; after that one graph fits every size
        for n in (1, 2):
            shape = [n if size is None else size for size in per_question.input.shape[1:]]
            dtype = per_question.input.dtype
            encoded = per_question.predict_on_batch(np.zeros((n, *shape), dtype=dtype))
            per_pair.predict_on_batch({"a": encoded, "b": encoded})
        return ScoringParts(
            model,
            lambda inputs, batch_size: in_batches(
                per_question.predict_on_batch, batch_size, inputs
            ),
            lambda a, b: per_pair.predict_on_batch({"a": a, "b": b}),
        )


def learning_rate_schedule(schedule: str, initial: float, epochs: int) -> list:
    """Callbacks that lower the learning rate: none (constant), halved whenever the validation
    loss did not improve for an epoch (plateau), or along a half cosine from `initial` to near
    zero at the last of `epochs` (cosine: the whole budget anneals, for long runs that early
    stopping rarely ends)."""
    import math

    import keras

    if schedule == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)]
    if schedule == "cosine":
        return [
            keras.callbacks.LearningRateScheduler(
                lambda epoch: initial * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
            )
        ]
    return []


def accepts_any_length(model) -> bool:
    """True for a model whose questions may have any number of tokens."""
    return model.get_layer("encoder").input.shape[1:] == (None,)


def length_buckets(
    pairs: dict, batch_size: int, weights: dict | None, seed: int, step: int = 8, window: int = 64
):
    """Training batches of pairs of similar length, each cut to its longest question (rounded
    up to `step` tokens, so only a few shapes are traced), as a tf.data pipeline.

    Every epoch shuffles anew from `seed`: the pairs are shuffled, sorted by length within
    windows of `window` batches, cut into batches, and the batches shuffled. With class
    weights, each pair carries its class's weight.
    """
    import tensorflow as tf

    from pipeline.text_model import PAD_ID

    q1, q2, labels = pairs["q1"], pairs["q2"], pairs["label"].astype(np.float32)
    lengths = np.maximum((q1 != PAD_ID).sum(axis=1), (q2 != PAD_ID).sum(axis=1))  # post-padded
    sample_weights = None
    if weights:
        sample_weights = np.where(pairs["label"] == 1, weights[1], weights[0]).astype(np.float32)
    rng = np.random.default_rng(seed)

    starts_at = np.arange(0, len(labels), batch_size)

    def batches():
        order = rng.permutation(len(labels))
        windows = np.arange(len(order)) // (batch_size * window)
        order = order[np.lexsort((lengths[order], windows))]
        for start in rng.permutation(starts_at):
            rows = np.sort(order[start : start + batch_size])
            cut = max(step, -(-int(lengths[rows].max()) // step) * step)
            features = {"q1": q1[rows, :cut], "q2": q2[rows, :cut]}
            if sample_weights is None:
                yield features, labels[rows]
            else:
                yield features, labels[rows], sample_weights[rows]

    ids = tf.TensorSpec((None, None), tf.int32)
    signature = ({"q1": ids, "q2": ids}, tf.TensorSpec((None,), tf.float32))
    if sample_weights is not None:
        signature += (tf.TensorSpec((None,), tf.float32),)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(starts_at))).prefetch(2)


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
    distribute = train_cfg["distribute"]  # none | mirrored, checked with the train section
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
