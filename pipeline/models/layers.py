"""Layers, losses and metrics shared by the Keras models, registered so that bundles load
with `safe_mode=True` (no Lambda layers, no pickled code)."""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "dupq"


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairDistance(keras.layers.Layer):
    """Distance between two encodings: `euclidean` or `cosine` (1 - cosine similarity)."""

    def __init__(self, kind: str = "euclidean", **kwargs):
        super().__init__(**kwargs)
        if kind not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be euclidean or cosine, got {kind!r}")
        self.kind = kind

    def call(self, inputs):
        a, b = inputs
        if self.kind == "euclidean":
            squared = ops.sum(ops.square(a - b), axis=-1, keepdims=True)
            return ops.sqrt(ops.maximum(squared, keras.config.epsilon()))
        a = a / ops.maximum(ops.norm(a, axis=-1, keepdims=True), keras.config.epsilon())
        b = b / ops.maximum(ops.norm(b, axis=-1, keepdims=True), keras.config.epsilon())
        return 1.0 - ops.sum(a * b, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairFeatures(keras.layers.Layer):
    """[a, b, |a - b|, a * b]: the "FC last layer" input of the original work."""

    def call(self, inputs):
        a, b = inputs
        return ops.concatenate([a, b, ops.abs(a - b), a * b], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
def contrastive_loss(y_true, distance, margin: float = 1.0):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006).

    Label convention: duplicate = 1 = small distance. Duplicates pay distance^2; non-duplicates
    pay max(margin - distance, 0)^2, so they are pushed at least `margin` apart.
    """
    y_true = ops.cast(ops.reshape(y_true, ops.shape(distance)), distance.dtype)
    similar = y_true * ops.square(distance)
    dissimilar = (1.0 - y_true) * ops.square(ops.maximum(margin - distance, 0.0))
    return ops.mean(similar + dissimilar, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ContrastiveLoss(keras.losses.Loss):
    def __init__(self, margin: float = 1.0, name: str = "contrastive", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DistanceAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy of "duplicate when distance < threshold" (the original work used 0.5)."""

    def __init__(self, threshold: float = 0.5, name: str = "accuracy", **kwargs):
        super().__init__(fn=_distance_accuracy, name=name, threshold=threshold, **kwargs)
        self.threshold = threshold

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


def _distance_accuracy(y_true, distance, threshold=0.5):
    y_true = ops.cast(ops.reshape(y_true, ops.shape(distance)), "float32")
    predicted = ops.cast(distance < threshold, "float32")
    return ops.mean(ops.cast(ops.equal(predicted, y_true), "float32"), axis=-1)


def pair_model(encoder: keras.Model, head: keras.Model, name: str) -> keras.Model:
    """q1, q2 -> head([encoder(q1), encoder(q2)]), with the shared parts named `encoder` and
    `head` so that scoring can run the encoder once per distinct question and the head once
    per pair (see `pipeline.bundle`)."""
    shape, dtype = tuple(encoder.input.shape[1:]), encoder.input.dtype
    q1 = keras.Input(shape=shape, dtype=dtype, name="q1")
    q2 = keras.Input(shape=shape, dtype=dtype, name="q2")
    return keras.Model([q1, q2], head([encoder(q1), encoder(q2)]), name=name)


def _encoding_inputs(width: int) -> tuple:
    return keras.Input(shape=(width,), name="a"), keras.Input(shape=(width,), name="b")


def distance_head(width: int, kind: str = "euclidean") -> keras.Model:
    """(a, b) -> their distance: the Siamese head."""
    a, b = _encoding_inputs(width)
    distance = PairDistance(kind, name="distance", dtype="float32")([a, b])
    return keras.Model([a, b], distance, name="head")


def classifier_head(width: int, params: dict, distance: str = "none") -> keras.Model:
    """The "FC last layer" head shared by `residual` and `birnn_cnn`: [a, b, |a-b|, a*b]
    (plus a distance if asked) -> Dense -> Dropout -> sigmoid."""
    a, b = _encoding_inputs(width)
    features = [PairFeatures(name="pair_features")([a, b])]
    if distance != "none":
        features.append(PairDistance(distance, name="distance")([a, b]))
    x = keras.layers.Concatenate(name="head_input")(features) if len(features) > 1 else features[0]
    x = keras.layers.Dense(params["head_units"], activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(params.get("head_dropout", 0.0), name="head_dropout")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(
        x
    )
    return keras.Model([a, b], probability, name="head")


def pair_classifier(encoder: keras.Model, params: dict, name: str, distance: str = "none"):
    """`encoder` + `classifier_head`, compiled with binary cross-entropy."""
    head = classifier_head(int(encoder.output.shape[-1]), params, distance)
    model = pair_model(encoder, head, name)
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
