"""The original work's models on TF-IDF-weighted question embeddings.

`siamese`: a shared residual MLP tower, Euclidean distance, contrastive loss.
`residual`: the same tower with its options as params and the "FC last layer" head
[a, b, |a-b|, a*b, distance] -> Dense -> sigmoid, trained with binary cross-entropy.
"""

from __future__ import annotations

import keras
from keras import layers

from pipeline.models.layers import (
    ContrastiveLoss,
    DistanceAccuracy,
    distance_head,
    pair_classifier,
    pair_model,
)


def tower(
    input_dim: int,
    units: int = 128,
    depth: int = 3,
    bn_position: str = "before_relu",
    residual: bool = True,
    concat_layers: bool = True,
    dropout: float = 0.0,
    name: str = "encoder",
) -> keras.Model:
    """Dense(units) + BatchNorm + ReLU blocks; block k>1 adds its input (residual sum);
    the output concatenates every block's output (layer concat), then BatchNorm."""
    if bn_position not in ("before_relu", "after_relu"):
        raise ValueError(f"bn_position must be before_relu or after_relu, got {bn_position!r}")
    inputs = keras.Input(shape=(input_dim,), name="embedding")
    x, outputs = inputs, []
    for k in range(depth):
        h = layers.Dense(units, name=f"dense_{k + 1}")(x)
        if bn_position == "before_relu":
            h = layers.BatchNormalization(momentum=0.9, name=f"bn_{k + 1}")(h)
            if residual and k > 0:
                h = layers.Add(name=f"residual_{k + 1}")([x, h])
            h = layers.ReLU(name=f"relu_{k + 1}")(h)
        else:
            h = layers.ReLU(name=f"relu_{k + 1}")(h)
            if residual and k > 0:
                h = layers.Add(name=f"residual_{k + 1}")([x, h])
            h = layers.BatchNormalization(momentum=0.9, name=f"bn_{k + 1}")(h)
        if dropout:
            h = layers.Dropout(dropout, name=f"dropout_{k + 1}")(h)
        outputs.append(h)
        x = h
    if concat_layers and depth > 1:
        x = layers.Concatenate(name="layer_concat")(outputs[::-1])
    # The last BatchNorm starts at scale 1/sqrt(width) so that distances between encodings
    # start near 1 (the contrastive margin) instead of sqrt(2 * width).
    width = x.shape[-1]
    x = layers.BatchNormalization(
        momentum=0.9, gamma_initializer=keras.initializers.Constant(width**-0.5), name="bn_out"
    )(x)
    return keras.Model(inputs, x, name=name)


def _tower_from(params: dict, input_dim: int) -> keras.Model:
    return tower(
        input_dim,
        units=params["units"],
        depth=params["depth"],
        bn_position=params.get("bn_position", "before_relu"),
        residual=params.get("residual", True),
        concat_layers=params.get("concat_layers", True),
        dropout=params.get("dropout", 0.0),
    )


def build_siamese(params: dict, input_dim: int) -> keras.Model:
    """Outputs a distance per pair (small = duplicate)."""
    encoder = _tower_from(params, input_dim)
    head = distance_head(int(encoder.output.shape[-1]), params.get("distance", "euclidean"))
    model = pair_model(encoder, head, name="siamese")
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"]),
        loss=ContrastiveLoss(params["margin"]),
        metrics=[DistanceAccuracy(params.get("accuracy_threshold", 0.5))],
    )
    return model


def build_residual(params: dict, input_dim: int) -> keras.Model:
    """Outputs P(duplicate) per pair."""
    encoder = _tower_from(params, input_dim)
    return pair_classifier(
        encoder, params, name="residual", distance=params.get("distance", "euclidean")
    )
