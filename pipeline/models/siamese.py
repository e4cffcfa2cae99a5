"""`siamese`: the original work's model on TF-IDF-weighted question embeddings: a shared
residual MLP tower, Euclidean distance, contrastive loss. Its tower is shared with `residual`.
"""

from __future__ import annotations

import keras
from keras import layers

from pipeline.models.base import KerasKind
from pipeline.models.layers import ContrastiveLoss, DistanceAccuracy, distance_head, pair_model
from pipeline.params import Bool, Choice, Fraction, Int, Number

BN_POSITIONS = ("before_relu", "after_relu")


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


def tower_from(params: dict, input_dim: int) -> keras.Model:
    return tower(
        input_dim,
        units=params["units"],
        depth=params["depth"],
        bn_position=params["bn_position"],
        residual=params["residual"],
        concat_layers=params["concat_layers"],
        dropout=params["dropout"],
    )


def build(params: dict, text_model) -> keras.Model:
    """Outputs a distance per pair (small = duplicate)."""
    encoder = tower_from(params, text_model.dim)
    head = distance_head(int(encoder.output.shape[-1]), params["distance"])
    model = pair_model(encoder, head, name="siamese")
    model.compile(
        optimizer=keras.optimizers.Adam(params["learning_rate"]),
        loss=ContrastiveLoss(params["margin"]),
        metrics=[DistanceAccuracy(0.5)],
    )
    return model


TOWER_PARAMS = {
    "units": Int(),
    "depth": Int(),
    "bn_position": Choice(*BN_POSITIONS),
    "residual": Bool(),
    "concat_layers": Bool(),
    "dropout": Fraction(),
    "learning_rate": Number(),
    "batch_size": Int(),
    "epochs": Int(),
}
PARAMS = {**TOWER_PARAMS, "distance": Choice("euclidean", "cosine"), "margin": Number()}
KIND = KerasKind("siamese", reads="embeddings", build=build, param_fields=PARAMS, output="distance")
