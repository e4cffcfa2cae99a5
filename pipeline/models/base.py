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

from pipeline.errors import ParamsError
from pipeline.params import Int, Section, check_section

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
        self.param_fields = {**param_fields, "seeds": Int()}  # networks averaged (see fit)

    def build(self, params: dict, text_model):
        """The compiled Keras model for these params (checked first) and this text model."""
        check_section(self.name, params, self.param_fields)
        return self._build(params, text_model)

    def fit(self, params, train_cfg, text_model, train, val, dirs) -> Fitted:
        """`<kind>.seeds` networks, the i-th trained as a single network with seed train.seed
        + i would be, joined into one model that averages their outputs. The first network
        logs its curves to the model's dvclive directory, each further one to a subdirectory
        named after its seed."""
        networks, seconds, epochs_run = [], 0.0, 0
        for number in range(params["seeds"]):
            seed = train_cfg["seed"] + number
            live = dirs.live if number == 0 else dirs.live / f"seed_{seed}"
            model, took, epochs, device, devices = self._fit_network(
                params, {**train_cfg, "seed": seed}, text_model, train, val, live
            )
            networks.append(model)
            seconds, epochs_run = seconds + took, epochs_run + epochs
        model = networks[0]
        if len(networks) > 1:
            from pipeline.models.layers import averaged

            model = averaged(networks, name=self.name)
            log.info(
                "%s: the mean of %d networks (seeds %d-%d)",
                self.name,
                len(networks),
                train_cfg["seed"],
                train_cfg["seed"] + len(networks) - 1,
            )
        val_rows = len(val["label"])
        if devices > 1:  # every batch splits evenly over the devices: topped up, then cut back
            val, _ = padded_for_devices(val, devices, None)
        raw_val = model.predict(
            {"q1": val["q1"], "q2": val["q2"]}, batch_size=train_cfg["predict_batch"], verbose=0
        )
        info = {
            "device": device,
            "train_seconds": round(seconds, 2),
            "epochs_run": epochs_run,
            "seconds_per_epoch": round(seconds / max(epochs_run, 1), 2),
            "networks": len(networks),
        }
        return Fitted(model, np.asarray(raw_val).ravel()[:val_rows], info)

    def _fit_network(self, params, train_cfg, text_model, train, val, live: Path) -> tuple:
        """One network, seeded by train_cfg: (model, seconds, epochs run, device, devices)."""
        scope, device, devices = configure_backend(train_cfg)
        log.info("training %s on %s (seed %d)", self.name, device, train_cfg["seed"])
        with scope:
            model = self.build(params, text_model)
        weights = class_weights(train["label"], train_cfg["class_weight"])
        val_weights, train_weights = None, None
        if devices > 1:  # JAX splits every batch evenly over the devices
            for key, size in (
                (f"{self.name}.batch_size", params["batch_size"]),
                ("train.predict_batch", train_cfg["predict_batch"]),
            ):
                if size % devices:
                    raise ParamsError(f"{key}: {size} does not divide over {devices} devices")
            train, train_weights = padded_for_devices(train, devices, weights)
            val, val_weights = padded_for_devices(val, devices, None)
        if accepts_any_length(model):
            row_weights = weights if train_weights is None else train_weights
            training = (
                length_buckets(train, params["batch_size"], row_weights, train_cfg["seed"]),
            )
            fit_args = {"shuffle": False}  # the buckets shuffle themselves
            log.info("batches of similar length, each cut to its longest question")
        else:
            training = ({"q1": train["q1"], "q2": train["q2"]}, train["label"].astype(np.float32))
            fit_args = {"batch_size": params["batch_size"], "shuffle": True}
            if train_weights is None:
                fit_args["class_weight"] = weights
            else:
                fit_args["sample_weight"] = train_weights
        validation = ({"q1": val["q1"], "q2": val["q2"]}, val["label"].astype(np.float32))
        if val_weights is not None:
            validation += (val_weights,)
        averaging = train_cfg["weight_average_epochs"] > 0
        callbacks = [
            # first: the callbacks after it see the averaged weights' validation loss
            *([weight_average(train_cfg, validation)] if averaging else []),
            early_stopping(
                train_cfg["patience"],
                train_cfg["warmup_epochs"],
                monitor="val_averaged_loss" if averaging else "val_loss",
            ),
            training_curves(live),
            *learning_rate_schedule(
                train_cfg["lr_schedule"], params["learning_rate"], params["epochs"]
            ),
        ]
        start = time.perf_counter()
        history = model.fit(
            *training,
            validation_data=validation,
            epochs=params["epochs"],
            callbacks=callbacks,
            verbose=2,
            **fit_args,
        )
        seconds = time.perf_counter() - start
        return model, seconds, len(history.history["loss"]), device, devices

    def save(self, model, directory: Path, text_model) -> dict:
        import keras

        from pipeline.models.layers import scoring_parts

        model.save(directory / self.model_file)
        per_question, _ = scoring_parts(model)
        # a model of any length scores questions padded to max_len
        shape = [text_model.max_len if n is None else n for n in per_question.output.shape[1:]]
        return {"encoding_floats": int(np.prod(shape)), "keras_backend": keras.backend.backend()}

    def load(self, directory: Path) -> ScoringParts:
        """The saved model, on whichever Keras backend runs: model.keras holds no backend's
        code, so a bundle trained under TensorFlow scores the same under JAX. Should a layer
        not run on this backend, the error says which backend trained it."""
        import json

        import keras

        trained_on = json.loads((directory / "bundle.json").read_text()).get("keras_backend")
        running = keras.backend.backend()
        try:
            return self._load(directory)
        except Exception as err:
            if trained_on in (None, running):
                raise
            raise ValueError(
                f"{self.model_file} was trained under Keras on {trained_on} and does not run "
                f"under {running} ({type(err).__name__}: {err})"
            ) from err

    def _load(self, directory: Path) -> ScoringParts:
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


def training_curves(live_dir: Path):
    """A Keras callback that logs each epoch's metrics with dvclive, named as dvclive's own
    Keras callback names them (which subclasses tf.keras, so it would need TensorFlow)."""
    import keras
    from dvclive.utils import standardize_metric_name

    from dvclive import Live

    class TrainingCurves(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)

        def on_epoch_end(self, epoch, logs=None):
            for metric, value in (logs or {}).items():
                self.live.log_metric(standardize_metric_name(metric, "dvclive.keras"), value)
            self.live.next_step()

        def on_train_end(self, logs=None):
            self.live.end()

    return TrainingCurves()


def early_stopping(patience: int, warmup_epochs: int, monitor: str = "val_loss"):
    """Stop when the validation loss has not improved for `patience` epochs, never before
    `warmup_epochs`, and keep the best epoch's weights whenever it came. (Keras'
    `start_from_epoch` ignores the warm-up epochs altogether, so a run no longer than its
    warm-up would keep its last epoch's weights, not its best.)"""
    import keras

    class EarlyStoppingAfterWarmup(keras.callbacks.EarlyStopping):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch < warmup_epochs:
                self.model.stop_training = False
                self.stopped_epoch = 0

    return EarlyStoppingAfterWarmup(
        monitor=monitor, mode="min", patience=patience, restore_best_weights=True
    )


def weight_average(train_cfg: dict, validation: tuple):
    """An exponential moving average of the trainable weights, updated after every batch,
    over about `train.weight_average_epochs` epochs of batches: it smooths the noise of the
    last steps of a constant learning rate at no training cost. After each epoch the averaged
    weights are evaluated on `validation` (logged as `val_averaged_loss` and
    `val_averaged_accuracy`, beside the raw weights' `val_loss`) and stay in the model while
    the later callbacks run, so early stopping keeps the best averaged epoch; training goes on
    from the raw weights. Layers' non-trainable state (BatchNormalization's statistics) is
    the raw weights'."""
    import keras

    horizon, batch_size = train_cfg["weight_average_epochs"], train_cfg["predict_batch"]

    class WeightAverage(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.validation, self.raw = validation, None

        def on_train_begin(self, logs=None):
            steps = self.params.get("steps")
            if not steps:
                raise ValueError("train.weight_average_epochs needs the batches per epoch")
            self.momentum = 1.0 - 1.0 / max(horizon * steps, 1.0)
            self.step = 0
            self.average = [np.array(w, dtype=np.float32) for w in self._trainable()]

        def _trainable(self) -> list:
            if hasattr(self.model, "jax_state_sync"):  # JAX keeps the weights apart in fit
                self.model.jax_state_sync()
            return [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            # a short memory at first, so the random initial weights fade within ~10 steps
            momentum = min(self.momentum, (1.0 + self.step) / (10.0 + self.step))
            for average, weights in zip(self.average, self._trainable(), strict=True):
                average *= momentum
                average += (1.0 - momentum) * weights

        def on_epoch_begin(self, epoch, logs=None):
            if self.raw is not None:
                self._assign(self.raw)
                self.raw = None

        def on_epoch_end(self, epoch, logs=None):
            self.raw = self._trainable()
            self._assign(self.average)
            x, y, *weights = self.validation
            scores = self.model.evaluate(
                x,
                y,
                sample_weight=weights[0] if weights else None,
                batch_size=batch_size,
                verbose=0,
                return_dict=True,
            )
            if logs is not None:
                logs.update({f"val_averaged_{name}": value for name, value in scores.items()})

        def _assign(self, values: list) -> None:
            for variable, value in zip(self.model.trainable_variables, values, strict=True):
                variable.assign(value)

    return WeightAverage()


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


class LengthBuckets:
    """Training batches of pairs of similar length, each cut to its longest question (rounded
    up to `step` tokens, so only a few shapes are compiled).

    Each epoch shuffles anew from `seed`: the pairs are shuffled, sorted by length within
    windows of `window` batches, cut into batches, and the batches shuffled. With class
    weights, each pair carries its class's weight; `weights` may also give one per pair.
    """

    def __init__(
        self,
        pairs: dict,
        batch_size: int,
        weights: dict | np.ndarray | None,
        seed: int,
        step=8,
        window=64,
    ):
        from pipeline.text_model import PAD_ID

        self.q1, self.q2 = pairs["q1"], pairs["q2"]
        self.labels = pairs["label"].astype(np.float32)
        # post-padded: a question's length is its count of real tokens
        self.lengths = np.maximum((self.q1 != PAD_ID).sum(axis=1), (self.q2 != PAD_ID).sum(axis=1))
        if isinstance(weights, np.ndarray):  # one per pair
            self.sample_weights = weights
        else:
            self.sample_weights = per_pair_weights(self.labels, weights)
        self.batch_size, self.step, self.window = batch_size, step, window
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def epoch_rows(self) -> list[np.ndarray]:
        """The rows of each batch of the next epoch, in the order they are trained on."""
        order = self.rng.permutation(len(self.labels))
        windows = np.arange(len(order)) // (self.batch_size * self.window)
        order = order[np.lexsort((self.lengths[order], windows))]
        starts = self.rng.permutation(np.arange(0, len(order), self.batch_size))
        return [np.sort(order[start : start + self.batch_size]) for start in starts]

    def batch(self, rows: np.ndarray) -> tuple:
        """(inputs, labels[, sample weights]) of these rows, cut to their longest question."""
        cut = max(self.step, -(-int(self.lengths[rows].max()) // self.step) * self.step)
        batch = ({"q1": self.q1[rows, :cut], "q2": self.q2[rows, :cut]}, self.labels[rows])
        if self.sample_weights is None:
            return batch
        return (*batch, self.sample_weights[rows])


def length_buckets(
    pairs: dict, batch_size: int, weights: dict | np.ndarray | None, seed: int, **options
):
    """`LengthBuckets` as the running Keras backend trains on them: a tf.data pipeline under
    TensorFlow (whose adapter for a Python dataset fixes the shapes of the first batches), a
    `keras.utils.PyDataset` under JAX and torch."""
    import keras

    buckets = LengthBuckets(pairs, batch_size, weights, seed, **options)
    if keras.backend.backend() != "tensorflow":

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.rows = buckets.epoch_rows()

            def __len__(self):
                return len(buckets)

            def __getitem__(self, index):
                return buckets.batch(self.rows[index])

            def on_epoch_end(self):
                self.rows = buckets.epoch_rows()

        return Batches()

    import tensorflow as tf

    ids = tf.TensorSpec((None, None), tf.int32)
    signature = ({"q1": ids, "q2": ids}, tf.TensorSpec((None,), tf.float32))
    if buckets.sample_weights is not None:
        signature += (tf.TensorSpec((None,), tf.float32),)
    dataset = tf.data.Dataset.from_generator(
        lambda: map(buckets.batch, buckets.epoch_rows()), output_signature=signature
    )
    return dataset.apply(tf.data.experimental.assert_cardinality(len(buckets))).prefetch(2)


def padded_for_devices(pairs: dict, devices: int, weights: dict | None) -> tuple[dict, np.ndarray]:
    """`pairs` grown to a multiple of `devices` rows with copies of the first, and per-row
    sample weights (the class weights, or 1) that are 0 on the copies: JAX shards each batch
    evenly over the devices. A copy so weighted adds nothing to the loss or the metrics; only
    batch-norm statistics of the one batch that holds the copies (fewer than `devices`) see
    them."""
    labels = pairs["label"]
    extra = -len(labels) % devices
    sample_weights = per_pair_weights(labels, weights)
    if sample_weights is None:
        sample_weights = np.ones(len(labels), dtype=np.float32)
    if extra:
        rows = np.concatenate([np.arange(len(labels)), np.zeros(extra, dtype=np.int64)])
        pairs = {key: value[rows] for key, value in pairs.items()}
    return pairs, np.concatenate([sample_weights, np.zeros(extra, dtype=np.float32)])


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


def per_pair_weights(labels: np.ndarray, weights: dict | None) -> np.ndarray | None:
    """Each pair's class weight (float32), or None without class weights."""
    if not weights:
        return None
    return np.where(labels == 1, weights[1], weights[0]).astype(np.float32)


def class_weights(labels: np.ndarray, setting) -> dict | None:
    """None, 'balanced', or an explicit {0: w0, 1: w1}."""
    if not setting:
        return None
    if setting == "balanced":
        counts = np.bincount(labels, minlength=2)
        return {k: float(len(labels) / (2 * counts[k])) for k in (0, 1)}
    return {int(k): float(v) for k, v in dict(setting).items()}


def configure_backend(train_cfg: dict):
    """Seeds, determinism, precision and distribution on the Keras backend that runs
    (`KERAS_BACKEND`: tensorflow, jax or torch); returns (the scope to build the model in, a
    description of the device, the devices each batch is split over evenly: JAX's data
    parallelism; 1 elsewhere, TensorFlow's mirrored strategy splits any batch)."""
    import contextlib
    import os

    import keras

    backend = keras.backend.backend()
    deterministic, mirrored = train_cfg["deterministic"], train_cfg["distribute"] == "mirrored"
    if backend == "jax" and deterministic:  # read when JAX first uses a GPU (CPU: always)
        os.environ["XLA_FLAGS"] = " ".join(
            [os.environ.get("XLA_FLAGS", ""), "--xla_gpu_deterministic_ops=true"]
        ).strip()
    keras.utils.set_random_seed(int(train_cfg["seed"]))
    if train_cfg["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    scope, replicas, devices = contextlib.nullcontext(), 1, 1
    if backend == "tensorflow":
        import tensorflow as tf

        if deterministic:
            tf.config.experimental.enable_op_determinism()
        strategy = tf.distribute.MirroredStrategy() if mirrored else tf.distribute.get_strategy()
        scope, replicas = strategy.scope(), strategy.num_replicas_in_sync
    elif backend == "torch":
        import torch

        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if mirrored:
            raise ParamsError("train.distribute: mirrored needs the tensorflow or jax backend")
    elif mirrored:  # jax: Keras' data parallelism over every device
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        replicas = devices = distribution.device_mesh.devices.size
    device = f"{keras_device()}, Keras on {backend}"
    if mirrored:
        device += f", mirrored over {replicas} replicas"
    return scope, device, devices


def keras_device() -> str:
    """The device the Keras backend computes on: "CPU", or "GPU x<n> (<name>)"."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        name = gpus and tf.config.experimental.get_device_details(gpus[0]).get("device_name")
        count = len(gpus)
    elif backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform != "cpu"]
        name, count = gpus and gpus[0].device_kind, len(gpus)
    else:
        import torch

        count = torch.cuda.device_count()
        name = count and torch.cuda.get_device_name(0)
    return f"GPU x{count} ({name or 'unknown'})" if count else "CPU"
